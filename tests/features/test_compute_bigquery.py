"""`atelier features compute --engine bigquery`: the feature tables computed in the region's dataset
by the pipeline's SQL, from the tables `atelier data load` put there.

Google Cloud cannot be reached from here: BigQuery is the tests' stand-in (tests/bigquery_standin.py),
which says so; it runs each query on DuckDB, keeps the jobs' locations and keys, and replaces a
destination table only when the query succeeds. The lake, its keys and the pipeline are the real ones."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from bigquery_standin import StandInBigQuery

from atelier.context import RegionContext
from atelier.data.load_bigquery import Target, load
from atelier.errors import AtelierError
from atelier.features import compute_bigquery
from atelier.features.definitions import bigquery_table
from atelier.features.repo import parse_definitions
from atelier.protect.parquet import read_dataset

KEY = "projects/group-eu/locations/europe-west9/keyRings/atelier-eu/cryptoKeys/bigquery"
EU = Target("group-eu", "atelier", "europe-west9", KEY)


def _loaded(settings) -> StandInBigQuery:
    """The lake and a journal part of events received in real time, loaded (no feature table is
    sent); the tables computed here include them, as `atelier features compute` computes them."""
    from datetime import datetime, timezone

    from atelier.events.journal import SCHEMA, Journal
    from atelier.features.pipeline import compute_features

    ctx = RegionContext.of(settings, "eu")
    lake = read_dataset(settings.paths.client_table("events", "eu"), ctx.keys).slice(0, 200)
    extra = {"event_id": pa.array([f"rt{i}" for i in range(lake.num_rows)]), "received_at": pa.array([datetime.now(timezone.utc)] * lake.num_rows, SCHEMA.field("received_at").type)}
    j = Journal(ctx)
    j.append(pa.table({f.name: extra[f.name] if f.name in extra else lake.column(f.name).cast(f.type) if f.name in lake.column_names else pa.nulls(lake.num_rows, f.type)
                       for f in SCHEMA}))
    j.close()
    compute_features(settings, "eu")
    bq = StandInBigQuery({"group-eu.atelier": ("europe-west9", KEY)})
    load(ctx, bq, EU)
    return bq


def _rows(table) -> list[dict]:
    return sorted(table.to_pylist(), key=lambda r: tuple(str(v) for v in r.values()))


def test_every_feature_table_is_computed_there_as_the_pipeline_computes_it_here(settings):
    bq = _loaded(settings)
    assert EU.table("client_activity") not in bq.tables
    rows, elsewhere = compute_bigquery.compute(settings, "eu", bq, EU)
    views = parse_definitions(settings).feature_views
    sources = {bigquery_table(v.batch_source.table): v for v in views if v.batch_source.table.startswith("features/")}
    assert elsewhere == [] and set(rows) == set(sources) | {compute_bigquery.STAGING} and len(rows) >= 9 and rows["client_recent"] > 0
    # every maison's table is cut from one pass of the events (the staging table), not one pass each
    assert all(compute_bigquery.STAGING in job.sql and "events" not in job.sql for job in compute_bigquery.plan(settings, EU)[0] if job.table.startswith("maison_engagement_") and job.table != compute_bigquery.STAGING)
    keys = RegionContext.of(settings, "eu").keys
    join_keys = {e.name: e.join_key for e in parse_definitions(settings).entities}
    for name, view in sources.items():
        local = read_dataset(settings.home / view.batch_source.table.format(region="eu"), keys)
        there = bq.db.cursor().sql(f"SELECT * FROM atelier.{name}").to_arrow_table().cast(local.schema)  # DuckDB's times carry no zone
        assert rows[name] == local.num_rows == there.num_rows, name
        if local.num_rows:
            floats = [f.name for f in local.schema if f.type == "double"]
            want, got = _rows(local.drop_columns(floats)), _rows(there.drop_columns(floats))
            assert got == want, name
            for f in floats:
                assert np.allclose(np.sort(there.column(f).to_numpy()), np.sort(local.column(f).to_numpy())), (name, f)
        assert bq.tables[EU.table(name)]["key"] == KEY
        assert bq.tables[EU.table(name)]["clustering"] == [join_keys[e] for e in view.entities], name  # the view's join keys
    # computed again: each table replaced, not appended to
    again, _ = compute_bigquery.compute(settings, "eu", bq, EU)
    assert again == rows and bq.rows(EU.table("client_activity")) == rows["client_activity"]


def test_a_dataset_without_the_lake_or_outside_the_region_computes_nothing(settings):
    empty = StandInBigQuery({"group-eu.atelier": ("europe-west9", KEY)})
    with pytest.raises(AtelierError, match="has no events table") as e:
        compute_bigquery.compute(settings, "eu", empty, EU)
    assert "atelier data load --to bigquery -r eu" in e.value.fix and not empty.tables
    elsewhere = StandInBigQuery({"group-eu.atelier": ("us-east4", KEY)})
    with pytest.raises(AtelierError, match="not in the region's europe-west9"):
        compute_bigquery.compute(settings, "eu", elsewhere, Target("group-eu", "atelier", "europe-west9", KEY))
    with pytest.raises(AtelierError, match="computes in europe-west9, not us-east4"):
        compute_bigquery.compute(settings, "eu", elsewhere, Target("group-eu", "atelier", "us-east4", KEY))


def test_a_query_bigquery_refuses_leaves_that_table_as_it_was(settings, monkeypatch):
    bq = _loaded(settings)
    rows, _ = compute_bigquery.compute(settings, "eu", bq, EU)
    before = bq.db.cursor().sql("SELECT * FROM atelier.product_popularity").to_arrow_table()
    plan = compute_bigquery.plan

    def broken(settings, target):
        jobs, elsewhere = plan(settings, target)
        return [j if j.table != "product_popularity" else compute_bigquery.Job(j.table, j.sql.replace("purchases_7d", "no_such_column", 1), j.cluster)
                for j in jobs], elsewhere

    monkeypatch.setattr(compute_bigquery, "plan", broken)
    with pytest.raises(AtelierError, match="refused the query of product_popularity") as e:
        compute_bigquery.compute(settings, "eu", bq, EU)
    assert "run again" in e.value.fix
    assert bq.db.cursor().sql("SELECT * FROM atelier.product_popularity").to_arrow_table().equals(before)


def test_the_command_computes_with_the_terraform_outputs(settings, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from atelier.cli.main import cli
    from atelier.data import load_bigquery

    bq = _loaded(settings)
    monkeypatch.setattr(load_bigquery, "bigquery_client", lambda target: bq)
    outputs = tmp_path / "eu.json"
    outputs.write_text(json.dumps({"region": {"value": {"location": "europe-west9", "bucket": "b", "bigquery_dataset": "atelier",
                                                         "redis_host": "10.0.0.3", "redis_port": 6378, "kms_keys": {"bigquery": KEY}}}}))
    r = CliRunner().invoke(cli, ["features", "compute", "-r", "eu", "--engine", "bigquery", "--terraform-output", str(outputs), "--project", "group-eu"])
    assert r.exit_code == 0, r.output
    assert "client_activity" in r.output and "client_recent" in r.output and "not computed" not in r.output and EU.table("client_recent") in bq.tables
    r = CliRunner().invoke(cli, ["features", "compute", "-r", "eu", "--engine", "bigquery"])
    assert r.exit_code == 1 and "--terraform-output" in str(r.exception)
    tables = dict(bq.tables)
    r = CliRunner().invoke(cli, ["features", "compute", "-r", "eu", "--engine", "snowflake", "--terraform-output", str(outputs), "--project", "group-eu"])
    assert r.exit_code == 1 and "no engine 'snowflake'" in str(r.exception) and "--engine local, --engine duckdb or --engine bigquery" in r.exception.fix
    assert bq.tables == tables  # nothing computed
