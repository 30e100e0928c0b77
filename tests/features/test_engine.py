"""The batch engine writes exactly what Feast's stock engine writes, only faster, and keeps its rules."""

import datetime as dt

import pyarrow as pa
import pytest

from atelier.protect.residency import ResidencyError, roster
from atelier.features import repo
from atelier.features.engine import write_online

pytestmark = pytest.mark.redis
NOW = dt.datetime(2026, 11, 28, tzinfo=dt.timezone.utc)


def _dump(server):
    c = server.client()
    return {k: c.hgetall(k) for k in c.scan_iter(count=1000)}


def test_same_bytes_as_feasts_stock_engine(redis_settings, redis_servers, monkeypatch):
    repo.apply(redis_settings, "eu")
    repo.materialize(redis_settings, "eu", end=NOW, incremental=False)
    ours = _dump(redis_servers["eu"])
    redis_servers["eu"].client().flushall()

    original = repo.config_dict
    monkeypatch.setattr(repo, "config_dict", lambda *a, **k: {**original(*a, **k), "batch_engine": "local"})
    repo.materialize(redis_settings, "eu", end=NOW, incremental=False)
    stock = _dump(redis_servers["eu"])
    assert len(ours) > 100
    assert ours == stock


def _view_and_store(redis_settings):
    repo.apply(redis_settings, "eu")
    store = repo.feature_store(redis_settings, "eu")
    return store, store.get_feature_view("client_profile"), store._get_provider().online_store


def _rows(country: str, when: str, client: str = "EU00000004") -> pa.Table:
    return pa.table({
        "client_id": [client],
        "country": [country],
        "profile_timestamp": pa.array([dt.datetime.fromisoformat(when)], pa.timestamp("us", "UTC")),
    })


def test_newer_row_wins_older_row_is_ignored(redis_settings):
    assert "EU00000004" in roster(redis_settings, "eu").to_pylist()  # a client the eu lake holds
    store, view, online = _view_and_store(redis_settings)
    write_online(store.config, online, view, _rows("FR", "2025-01-01T00:00:00+00:00"))
    write_online(store.config, online, view, _rows("IT", "2024-06-01T00:00:00+00:00"))  # older: ignored
    got = store.get_online_features(features=["client_profile:country"], entity_rows=[{"client_id": "EU00000004"}]).to_dict()
    assert got["country"] == ["FR"]
    write_online(store.config, online, view, _rows("DE", "2025-02-01T00:00:00+00:00"))  # newer: wins
    got = store.get_online_features(features=["client_profile:country"], entity_rows=[{"client_id": "EU00000004"}]).to_dict()
    assert got["country"] == ["DE"]


def test_another_regions_client_is_refused_before_anything_is_sent(redis_settings, redis_servers):
    store, view, online = _view_and_store(redis_settings)
    us_client = roster(redis_settings, "us").to_pylist()[0]
    rows = pa.concat_tables([_rows("FR", "2025-01-01T00:00:00+00:00"), _rows("US", "2025-01-01T00:00:00+00:00", client=us_client)])
    with pytest.raises(ResidencyError, match="would be written to region 'eu'"):
        write_online(store.config, online, view, rows)
    assert list(redis_servers["eu"].client().scan_iter()) == []


def test_incremental_runs_load_only_what_is_new(redis_settings):
    repo.apply(redis_settings, "eu")
    first = repo.materialize(redis_settings, "eu", end=dt.datetime(2026, 6, 1, tzinfo=dt.timezone.utc), views=["client_activity"])
    again = repo.materialize(redis_settings, "eu", end=dt.datetime(2026, 6, 1, tzinfo=dt.timezone.utc), views=["client_activity"])
    later = repo.materialize(redis_settings, "eu", end=NOW, views=["client_activity"])
    assert first["client_activity"] > 0
    assert again.get("client_activity", 0) == 0
    # Only clients whose activity changed between June and November are loaded again.
    assert 0 < later["client_activity"] <= first["client_activity"] + 50


def test_materialization_from_bigquery_streams_the_bytes_the_lake_gives(redis_settings, redis_servers, monkeypatch, tmp_path):
    """In the cloud the feature tables are BigQuery's and the definitions read them there. The
    engine streams each view's latest rows a page at a time (the Storage Read API) and writes the
    same bytes into Redis as from the lake. Google Cloud cannot be reached from here: BigQuery is
    the tests' stand-in (tests/bigquery_standin.py), which runs Feast's own query on DuckDB."""
    from bigquery_standin import StandInBigQuery
    from feast.infra.offline_stores import bigquery as feast_bigquery
    from google.cloud import bigquery as google_bigquery

    from atelier.context import RegionContext
    from atelier.data.load_bigquery import Target, load
    from atelier.features.cloud import cloud_config
    from atelier.features.definitions import bigquery_table

    views = ["client_activity", "product_popularity"]  # a view per client, a view per product
    repo.apply(redis_settings, "eu")
    repo.materialize(redis_settings, "eu", end=NOW, incremental=False, views=views)
    from_lake = _dump(redis_servers["eu"])
    redis_servers["eu"].client().flushall()

    key = "projects/group-eu/locations/europe-west9/keyRings/atelier-eu/cryptoKeys/bigquery"
    bq = StandInBigQuery({"group-eu.atelier": ("europe-west9", key)})
    bq.page_rows = 50
    # every table, as in the cloud (applying checks that each source exists): the lake and the
    # feature tables computed here, loaded by `atelier data load --to bigquery --features`
    load(RegionContext.of(redis_settings, "eu"), bq, Target("group-eu", "atelier", "europe-west9", key), features=True)
    store = repo.feature_store(redis_settings, "eu")
    assert {f"group-eu.atelier.{bigquery_table(v.batch_source.table)}" for v in store.list_feature_views()} <= set(bq.tables)
    monkeypatch.setenv("ATELIER_OFFLINE_STORE", "bigquery")
    outputs = {"location": "europe-west9", "bucket": "b", "bigquery_dataset": "atelier", "redis_host": "10.0.0.3", "redis_port": 6378}
    cloud, _ = cloud_config("eu", outputs, "group-eu")
    local = repo.config_dict(redis_settings, "eu", inline_secrets=True)
    cloud = {**cloud, "registry": {**local["registry"], "path": str(tmp_path / "registry.db")}, "online_store": local["online_store"]}
    monkeypatch.setattr(repo, "config_dict", lambda *a, **k: cloud)  # the cloud's configuration, this machine's Redis and registry
    monkeypatch.setattr(feast_bigquery, "_get_bigquery_client", lambda *a, **k: bq)
    monkeypatch.setattr(google_bigquery, "Client", lambda *a, **k: bq)  # what a source's validation creates
    repo.apply(redis_settings, "eu")
    written = repo.materialize(redis_settings, "eu", end=NOW, incremental=False, views=views)
    assert _dump(redis_servers["eu"]) == from_lake and len(from_lake) > 100
    assert bq.stats["pages"] > len(views) and written["client_activity"] > bq.page_rows  # several pages, never one whole table

    # A us client planted in the eu dataset's client_activity: refused before a row is read.
    us_client = roster(redis_settings, "us").to_pylist()[0]
    planted = bq.db.cursor().sql("SELECT * FROM atelier.client_activity LIMIT 1").to_arrow_table()
    planted = planted.set_column(planted.schema.get_field_index("client_id"), "client_id", pa.array([us_client]))
    bq.db.register("planted", planted)
    bq.db.execute("INSERT INTO atelier.client_activity SELECT * FROM planted").fetchall()
    before = _dump(redis_servers["eu"])
    with pytest.raises(ResidencyError, match="1 client\\(s\\) that atelier.clients does not hold") as e:
        repo.materialize(redis_settings, "eu", end=NOW, incremental=False, views=["client_activity"])
    assert repr(us_client) in str(e.value.details) and _dump(redis_servers["eu"]) == before
