"""`atelier data load --to bigquery`: the lake into the region's dataset, once, in the region, under its key.

Google Cloud cannot be reached from here: BigQuery is a stand-in (tests/bigquery_standin.py)
that keeps the rules the loader relies on (locations, job ids used once, CMEK on every job) and
holds the tables in DuckDB. The lake, its keys and the journal are the real ones.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from bigquery_standin import StandInBigQuery

from atelier.context import RegionContext
from atelier.data import load_bigquery
from atelier.data.load_bigquery import Target, load, target_from_outputs
from atelier.errors import AtelierError
from atelier.events import journal
from atelier.protect.parquet import read_dataset

KEY = "projects/group-eu/locations/europe-west9/keyRings/atelier-eu/cryptoKeys/bigquery"
EU = Target("group-eu", "atelier", "europe-west9", KEY)


def _bigquery(location="europe-west9", key=KEY) -> StandInBigQuery:
    return StandInBigQuery({"group-eu.atelier": (location, key)})


def _lake_rows(settings, table, region="eu") -> int:
    return read_dataset(settings.paths.client_table(table, region), RegionContext.of(settings, region).keys, columns=["client_id"]).num_rows


def _files(home) -> dict:
    return {p: p.stat().st_mtime_ns for p in home.rglob("*") if p.is_file()}


def test_loading_twice_sends_nothing_the_second_time_and_writes_no_plaintext(settings, home):
    bq, ctx = _bigquery(), RegionContext.of(settings, "eu")
    before = _files(home)
    first = load(ctx, bq, EU)
    assert _files(home) == before  # nothing written here: every part went from memory
    assert set(bq.sent) == {__import__("io").BytesIO}
    for table in ("events", "clients"):
        assert bq.rows(EU.table(table)) == _lake_rows(settings, table) == first[table].rows > 0
    assert bq.rows(EU.table("products")) == read_dataset(settings.paths.catalog("products"), None).num_rows
    assert bq.tables[EU.table("events")]["partitioning"].field == "event_timestamp"
    assert bq.tables[EU.table("events")]["clustering"] == ["client_id"] and {t["key"] for t in bq.tables.values()} == {KEY}
    jobs = len(bq.load_jobs())
    second = load(ctx, bq, EU)
    assert len(bq.load_jobs()) == jobs and all(r.loaded == 0 and r.deleted == 0 for r in second.values())  # nothing sent
    assert second["events"].held == first["events"].loaded
    assert bq.rows(EU.table("events")) == _lake_rows(settings, "events")


def test_the_feature_sql_runs_on_the_loaded_tables_as_on_the_lake(settings):
    """The tables have the names and columns the feature SQL reads: each query gives, on the
    loaded dataset, what it gives on the lake's tables in memory."""
    from atelier.features import sql

    bq, ctx = _bigquery(), RegionContext.of(settings, "eu")
    load(ctx, bq, EU)
    lake = {"events": read_dataset(settings.paths.client_table("events", "eu"), ctx.keys),
            "clients": read_dataset(settings.paths.client_table("clients", "eu"), ctx.keys),
            "products": read_dataset(settings.paths.catalog("products"), None)}
    for name, build in sql.QUERIES.items():
        there = bq.query(sql.for_bigquery(build(), EU.dataset), location=EU.location).result()
        here = sql.run(build(), **lake)
        assert len(there) == here.num_rows and (here.num_rows > 0 or name == "client_recent"), name  # no event came in real time here
        assert sorted(there, key=repr) == sorted((tuple(r.values()) for r in here.to_pylist()), key=repr), name


def test_events_received_in_real_time_load_as_one_more_unit(settings):
    bq, ctx = _bigquery(), RegionContext.of(settings, "eu")
    load(ctx, bq, EU)
    lake = read_dataset(settings.paths.client_table("events", "eu"), ctx.keys).slice(0, 5)
    now = datetime.now(timezone.utc)
    streamed = lake.set_column(lake.schema.get_field_index("channel"), "channel", pa.array(["rt-test"] * 5)).append_column("event_id", pa.array([f"rt{i}" for i in range(5)]))
    for name in journal.SCHEMA.names:
        if name not in streamed.column_names:
            streamed = streamed.append_column(name, pa.array([now - timedelta(minutes=1)] * 5 if name == "received_at" else [None] * 5, journal.SCHEMA.field(name).type))
    j = journal.Journal(ctx)
    j.append(streamed)
    j.close()
    report = load(ctx, bq, EU)
    assert report["events"].loaded == 1 and report["events"].rows == 5 and report["clients"].loaded == 0
    assert bq.rows(EU.table("events")) == _lake_rows(settings, "events") + 5
    assert bq.rows(EU.table("events"), "channel = 'rt-test'") == 5
    # and as the journal holds them, received_at and all, for the real-time view's SQL
    assert report["streamed_events"].loaded == 1 and bq.rows(EU.table("streamed_events"), "received_at IS NOT NULL") == 5
    assert load(ctx, bq, EU)["streamed_events"].loaded == 0


def test_many_journal_parts_go_in_one_load_job(settings):
    """A service writes a journal part per batch of events; BigQuery allows 1,500 load jobs per
    table a day, so the parts go together, each row still tagged with its own part."""
    bq, ctx = _bigquery(), RegionContext.of(settings, "eu")
    load(ctx, bq, EU)
    lake = read_dataset(settings.paths.client_table("events", "eu"), ctx.keys).slice(0, 30)
    j = journal.Journal(ctx)
    for i in range(30):
        part = lake.slice(i, 1).append_column("event_id", pa.array([f"rt{i}"]))
        for name in journal.SCHEMA.names:
            if name not in part.column_names:
                part = part.append_column(name, pa.array([None], journal.SCHEMA.field(name).type))
        j.append(part)
    j.close()
    jobs = len(bq.load_jobs())
    report = load(ctx, bq, EU)
    assert (report["events"].loaded, report["events"].rows, len(report["events"].jobs)) == (30, 30, 1)
    assert (report["streamed_events"].loaded, len(report["streamed_events"].jobs)) == (30, 1)
    assert len(bq.load_jobs()) == jobs + 2
    assert len(set(bq.column(EU.table("events"), "_load_unit"))) == len(list(settings.paths.client_table("events", "eu").glob("part-*.parquet"))) + 30
    assert load(ctx, bq, EU)["events"].loaded == 0


def test_a_new_lake_replaces_the_old_units_and_an_erased_client_leaves_bigquery(settings):
    bq, ctx = _bigquery(), RegionContext.of(settings, "eu")
    load(ctx, bq, EU)
    from atelier.protect.parquet import write_dataset

    folder = settings.paths.client_table("events", "eu")
    events = read_dataset(folder, ctx.keys)
    erased = events.column("client_id")[0].as_py()
    write_dataset(folder, events.filter(pc.not_equal(events.column("client_id"), erased)), ctx.keys)  # the lake as an erasure rewrites it
    report = load(ctx, bq, EU)
    assert report["events"].deleted >= 1 and report["events"].loaded >= 1
    assert bq.rows(EU.table("events")) == _lake_rows(settings, "events")  # no unit twice, none missing
    assert len(set(bq.column(EU.table("events"), "_load_unit"))) == len(list(folder.glob("part-*.parquet")))
    assert bq.rows(EU.table("events"), f"client_id = '{erased}'") == 0


def test_feature_tables_load_under_the_names_feast_reads_and_a_recomputed_one_replaces_the_old(settings):
    """`--features`: the tables `atelier features compute` wrote here, named as the BigQuery
    sources of the feature repo name them (tests/features/test_engine.py materializes from them)."""
    from atelier.features.definitions import bigquery_table
    from atelier.features.repo import parse_definitions
    from atelier.protect.parquet import write_dataset

    bq, ctx = _bigquery(), RegionContext.of(settings, "eu")
    load(ctx, bq, EU)
    assert EU.table("client_activity") not in bq.tables  # the lake alone unless asked
    first = load(ctx, bq, EU, features=True)
    root = settings.paths.features("eu")
    sources = {v.batch_source.table for v in parse_definitions(settings).feature_views if v.batch_source.table.startswith("features/")}
    assert len(sources) >= 5
    for source in sources:  # every table a view reads, under its source's name
        folder, name = settings.home / source.format(region="eu"), bigquery_table(source)
        assert bq.rows(EU.table(name)) == read_dataset(folder, ctx.keys).num_rows == first[name].rows, name
    assert first["events"].loaded == 0  # the lake was there already
    assert bq.tables[EU.table("client_activity")]["clustering"] == ["client_id"]
    assert bq.tables[EU.table("product_popularity")]["clustering"] == ["product_id"]
    assert bq.tables[EU.table("country_sales_weekly")]["clustering"] == ["country_code", "product_id"]  # the view's join keys
    assert {t["key"] for t in bq.tables.values()} == {KEY}

    jobs = len(bq.load_jobs())
    assert all(r.loaded == r.deleted == 0 for r in load(ctx, bq, EU, features=True).values()) and len(bq.load_jobs()) == jobs
    activity = root / "client_activity"
    table = read_dataset(activity, ctx.keys)
    write_dataset(activity, table.slice(0, table.num_rows // 2), ctx.keys)  # computed again, with other rows
    report = load(ctx, bq, EU, features=True)
    assert report["client_activity"].deleted >= 1 and report["client_activity"].loaded >= 1
    assert bq.rows(EU.table("client_activity")) == table.num_rows // 2
    assert sum(r.loaded + r.deleted for name, r in report.items() if name != "client_activity") == 0

    # a feature added to the view: the table BigQuery holds gains its column, and only new rows stay
    popularity = root / "product_popularity"
    table = read_dataset(popularity, ctx.keys)
    write_dataset(popularity, table.append_column("views_1d", pa.array(range(table.num_rows), pa.int64())), ctx.keys)
    report = load(ctx, bq, EU, features=True)
    assert report["product_popularity"].loaded >= 1 and report["product_popularity"].deleted >= 1
    assert sorted(bq.column(EU.table("product_popularity"), "views_1d")) == list(range(table.num_rows))

    # the feature removed again: its column leaves the table, which then takes the new parts
    write_dataset(popularity, table, ctx.keys)
    report = load(ctx, bq, EU, features=True)
    assert report["product_popularity"].loaded >= 1 and bq.rows(EU.table("product_popularity")) == table.num_rows
    assert _bq_columns(bq, "product_popularity") == set(table.column_names) | {load_bigquery.UNIT}
    # a column no view has, on a table whose parts are all held: dropped, nothing sent
    bq.db.execute("ALTER TABLE atelier.client_activity ADD COLUMN retired_feature DOUBLE").fetchall()
    jobs = len(bq.load_jobs())
    assert all(r.loaded == r.deleted == 0 for r in load(ctx, bq, EU, features=True).values()) and len(bq.load_jobs()) == jobs
    assert "retired_feature" not in _bq_columns(bq, "client_activity")

    # an empty table whose view gained a feature is loaded again, to add its column
    grown = table.slice(0, 0).append_column("views_7d", pa.array([], pa.int64()))
    write_dataset(popularity, grown, ctx.keys, schema=grown.schema)
    report = load(ctx, bq, EU, features=True)
    assert report["product_popularity"].loaded == 1 and bq.rows(EU.table("product_popularity")) == 0
    assert "views_7d" in _bq_columns(bq, "product_popularity")
    assert all(r.loaded == r.deleted == 0 for r in load(ctx, bq, EU, features=True).values())

    # a clustering column the view no longer has (its entities changed): refused, with nothing sent
    write_dataset(popularity, table.drop_columns(["product_id"]), ctx.keys)
    jobs, columns = len(bq.load_jobs()), _bq_columns(bq, "product_popularity")
    with pytest.raises(AtelierError, match="clustered by product_id") as e:
        load(ctx, bq, EU, features=True)
    assert "bq rm -t" in e.value.fix and len(bq.load_jobs()) == jobs and _bq_columns(bq, "product_popularity") == columns


def _bq_columns(bq: StandInBigQuery, table: str) -> set[str]:
    return {f.name for f in bq.get_table(EU.table(table)).schema}


def test_a_feature_table_with_another_regions_client_or_no_feature_tables_send_nothing(settings):
    from atelier.protect.parquet import write_dataset
    from atelier.protect.residency import roster

    bq, ctx = _bigquery(), RegionContext.of(settings, "eu")
    load(ctx, bq, EU)
    sent = len(bq.sent)
    activity = settings.paths.features("eu") / "client_activity"
    table = read_dataset(activity, ctx.keys)
    us_client = roster(settings, "us")[0].as_py()
    planted = table.set_column(table.schema.get_field_index("client_id"), "client_id", pa.array([us_client] + table.column("client_id").to_pylist()[1:]))
    write_dataset(activity, planted, ctx.keys)
    with pytest.raises(AtelierError, match=f"(?s)client_activity part .*not held by this region.*{us_client}"):
        load(ctx, bq, EU, features=True)
    assert EU.table("client_activity") not in bq.tables and len(bq.sent) == sent  # its table comes first: nothing went
    import shutil

    shutil.rmtree(settings.paths.features("eu"))
    with pytest.raises(AtelierError, match="has no feature tables to load") as e:
        load(ctx, bq, EU, features=True)
    assert "atelier features compute" in e.value.fix and len(bq.sent) == sent


def test_a_dataset_outside_the_region_or_under_another_key_gets_nothing(settings):
    ctx = RegionContext.of(settings, "eu")
    elsewhere = _bigquery(location="us-east1")
    with pytest.raises(AtelierError, match="is in us-east1, not in the region's europe-west9: nothing was sent"):
        load(ctx, elsewhere, EU)
    google_key = _bigquery(key=None)
    with pytest.raises(AtelierError, match="Google-managed key"):
        load(ctx, google_key, EU)
    assert elsewhere.sent == google_key.sent == []
    with pytest.raises(AtelierError, match="loads into europe-west9, not us-east1"):
        load(ctx, elsewhere, Target("group-eu", "atelier", "us-east1", KEY))
    outputs = {"location": "us-east1", "bigquery_dataset": "atelier", "kms_keys": {"bigquery": KEY}}
    with pytest.raises(AtelierError, match="terraform says region 'eu' is in us-east1"):
        target_from_outputs("eu", outputs, "group-eu")


def test_a_failed_job_keeps_what_was_loaded_and_a_second_run_finishes_without_twice(settings, monkeypatch):
    bq, ctx = _bigquery(), RegionContext.of(settings, "eu")
    bq.fail = {2, 3, 4}  # the second unit fails under each of its job ids
    with pytest.raises(AtelierError, match="(?s)3 times.*run the load again"):
        load(ctx, bq, EU)
    assert len(bq.load_jobs()) == 4
    base = bq.load_jobs()[1]
    report = load(ctx, bq, EU)
    assert sum(r.held for r in report.values()) == 1  # the first unit was kept
    assert [j for j in bq.load_jobs() if j.startswith(base)] == [base, f"{base}_2", f"{base}_3", f"{base}_4"]  # failed ids skipped, a new one sent
    assert bq.rows(EU.table("events")) == _lake_rows(settings, "events")
    # A unit whose job finished but that the listing missed (two loaders at once) is not appended again:
    # BigQuery refuses its job id, and the loader reads that job instead.
    held = load_bigquery.units(ctx)
    monkeypatch.setattr(load_bigquery, "_held_units", lambda *a: set())
    report = load(ctx, bq, EU)
    assert bq.rows(EU.table("events")) == _lake_rows(settings, "events")
    assert sum(r.loaded for r in report.values()) == sum(u.file is not None for u in held)  # the empty streamed_events is there: nothing to send


def test_the_command_loads_with_the_terraform_outputs(settings, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from atelier.cli.main import cli

    bq = _bigquery()
    monkeypatch.setattr(load_bigquery, "bigquery_client", lambda target: bq)  # the stand-in, not Google Cloud
    outputs = {"region": {"value": {"location": "europe-west9", "bucket": "b", "bigquery_dataset": "atelier", "redis_host": "10.0.0.3", "redis_port": 6378,
                                    "kms_keys": {"bigquery": KEY}}}}
    (tmp_path / "eu.json").write_text(json.dumps(outputs))
    args = ["data", "load", "--to", "bigquery", "-r", "eu", "--terraform-output", str(tmp_path / "eu.json"), "--project", "group-eu"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "events" in result.output and f"{_lake_rows(settings, 'events'):,}" in result.output
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0 and "nothing to load" in again.output
    with_features = CliRunner().invoke(cli, [*args, "--features"])
    assert with_features.exit_code == 0 and "client_activity" in with_features.output and EU.table("client_activity") in bq.tables
    wrong = CliRunner().invoke(cli, [*args[:2], "--to", "snowflake", *args[4:]])
    assert wrong.exit_code != 0 and "bigquery" in wrong.output


def test_bad_outputs_a_missing_dataset_or_a_foreign_table_stop_the_load_with_nothing_sent(settings, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from atelier.cli.main import cli
    from atelier.features.cloud import read_module_outputs

    bq = _bigquery()
    monkeypatch.setattr(load_bigquery, "bigquery_client", lambda target: bq)
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(AtelierError, match="cannot read the Terraform outputs") as e:
        read_module_outputs(tmp_path / "broken.json")
    assert "terraform" in e.value.fix
    no_key = {"location": "europe-west9", "bigquery_dataset": "atelier", "kms_keys": {"storage": "k"}}
    with pytest.raises(AtelierError, match="lack kms_keys.bigquery"):
        target_from_outputs("eu", no_key, "group-eu")
    result = CliRunner().invoke(cli, ["data", "load", "--to", "bigquery", "-r", "eu", "--terraform-output", str(tmp_path / "missing.json"), "--project", "group-eu"])
    assert result.exit_code != 0 and "cannot read the Terraform outputs" in str(result.exception)
    ctx = RegionContext.of(settings, "eu")
    with pytest.raises(AtelierError, match="group-eu.other does not exist") as e:
        load(ctx, bq, Target("group-eu", "other", "europe-west9", KEY))
    assert "Terraform" in e.value.fix
    # a table of the same name that the loader did not write (no _load_unit): refused, not appended to
    bq.put(EU.table("clients"), pa.table({"client_id": ["someone"]}))
    with pytest.raises(AtelierError, match="was not written by `atelier data load`"):
        load(ctx, bq, EU)
    assert bq.sent == [] and bq.rows(EU.table("clients")) == 1
