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


def _in_the_cloud(settings, monkeypatch, tmp_path, page_rows: int = 50):
    """The region's definitions and feature tables as in the cloud: every table in BigQuery (the
    lake and the feature tables computed here, loaded by `atelier data load --to bigquery
    --features`), the cloud's configuration with this machine's Redis and registry. Google Cloud
    cannot be reached from here: BigQuery is the tests' stand-in (tests/bigquery_standin.py), which
    runs Feast's own queries on DuckDB."""
    from bigquery_standin import StandInBigQuery
    from feast.infra.offline_stores import bigquery as feast_bigquery
    from google.cloud import bigquery as google_bigquery

    from atelier.context import RegionContext
    from atelier.data.load_bigquery import Target, load
    from atelier.features.cloud import cloud_config
    from atelier.features.definitions import bigquery_table

    key = "projects/group-eu/locations/europe-west9/keyRings/atelier-eu/cryptoKeys/bigquery"
    bq = StandInBigQuery({"group-eu.atelier": ("europe-west9", key)})
    bq.page_rows = page_rows
    load(RegionContext.of(settings, "eu"), bq, Target("group-eu", "atelier", "europe-west9", key), features=True)
    store = repo.feature_store(settings, "eu")
    assert {f"group-eu.atelier.{bigquery_table(v.batch_source.table)}" for v in store.list_feature_views()} <= set(bq.tables)
    monkeypatch.setenv("ATELIER_OFFLINE_STORE", "bigquery")
    outputs = {"location": "europe-west9", "bucket": "b", "bigquery_dataset": "atelier", "redis_host": "10.0.0.3", "redis_port": 6378}
    cloud, _ = cloud_config("eu", outputs, "group-eu")
    local = repo.config_dict(settings, "eu", inline_secrets=True)
    cloud = {**cloud, "registry": {**local["registry"], "path": str(tmp_path / "registry.db")}, "online_store": local["online_store"]}
    monkeypatch.setattr(repo, "config_dict", lambda *a, **k: cloud)  # the cloud's configuration, this machine's Redis and registry

    def client(project=None, location=None, **_):  # Feast's client: its jobs run in `location`
        bq.location = location
        return bq

    monkeypatch.setattr(feast_bigquery, "_get_bigquery_client", client)
    monkeypatch.setattr(google_bigquery, "Client", lambda *a, **k: bq)  # what a source's validation creates
    repo.apply(settings, "eu")
    return bq


def test_materialization_from_bigquery_streams_the_bytes_the_lake_gives(redis_settings, redis_servers, monkeypatch, tmp_path):
    """In the cloud the feature tables are BigQuery's and the definitions read them there. The
    engine streams each view's latest rows a page at a time (the Storage Read API) and writes the
    same bytes into Redis as from the lake."""
    views = ["client_activity", "product_popularity"]  # a view per client, a view per product
    repo.apply(redis_settings, "eu")
    repo.materialize(redis_settings, "eu", end=NOW, incremental=False, views=views)
    from_lake = _dump(redis_servers["eu"])
    redis_servers["eu"].client().flushall()

    bq = _in_the_cloud(redis_settings, monkeypatch, tmp_path)
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


def test_point_in_time_features_from_bigquery_are_the_lakes(redis_settings, monkeypatch, tmp_path):
    """Training sets in the cloud: Feast's BigQuery offline store joins each client and time to its
    features as of that time, in the region's dataset, and the result is read a page at a time
    (the Storage Read API). Same rows as from the lake, for clients at several times, one before
    any of their activity and one the lake does not hold."""
    import pandas as pd

    from atelier.models.recommend.dataset import CANDIDATE_SERVICE, QUERY_SERVICE
    from atelier.protect.parquet import read_dataset

    repo.apply(redis_settings, "eu")
    clients = roster(redis_settings, "eu").to_pylist()[:40] + ["EU-NOT-HELD"]
    times = [pd.Timestamp("2020-01-01", tz="UTC"), pd.Timestamp("2026-03-01", tz="UTC"), pd.Timestamp("2026-06-15 12:00", tz="UTC"), pd.Timestamp(NOW)]
    entity = pd.DataFrame([(c, t) for c in clients for t in times], columns=["client_id", "event_timestamp"])
    ids = read_dataset(redis_settings.paths.catalog("products"), None, columns=["product_id"]).column("product_id").to_pylist()[:30]
    product_entity = pd.DataFrame([(p, t) for p in ids for t in times[1:]], columns=["product_id", "event_timestamp"])

    def key(frame: pd.DataFrame, by: str) -> pd.DataFrame:
        frame = frame.copy()
        frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True)
        for c in frame.columns:  # lists (the product histories) compared as tuples
            if frame[c].map(lambda v: hasattr(v, "__len__") and not isinstance(v, str)).any():
                frame[c] = frame[c].map(lambda v: tuple(v) if v is not None and hasattr(v, "__len__") else v)
        return frame.sort_values([by, "event_timestamp"]).reset_index(drop=True)[sorted(frame.columns)]

    lake = {s: repo.historical_features(redis_settings, "eu", e.copy(), s) for s, e in ((QUERY_SERVICE, entity), (CANDIDATE_SERVICE, product_entity))}
    bq = _in_the_cloud(redis_settings, monkeypatch, tmp_path, page_rows=20)
    pages = bq.stats.get("pages", 0)
    cloud = {s: repo.historical_features(redis_settings, "eu", e.copy(), s) for s, e in ((QUERY_SERVICE, entity), (CANDIDATE_SERVICE, product_entity))}
    assert bq.stats["pages"] - pages >= (len(entity) + len(product_entity)) // 20  # read a page at a time, never whole
    assert not [t for t in bq.tables if "entity_df" in t]  # Feast's entity tables are dropped once read
    for service, by in ((QUERY_SERVICE, "client_id"), (CANDIDATE_SERVICE, "product_id")):
        ours, theirs = key(lake[service], by), key(cloud[service], by)
        assert len(ours) == len(entity if by == "client_id" else product_entity) and ours.shape[1] > 5
        assert 0 < ours.drop(columns=[by, "event_timestamp"]).notna().all(axis=1).sum() < len(ours)  # rows with features, and rows before any
        pd.testing.assert_frame_equal(ours, theirs, check_dtype=False, check_exact=False, rtol=1e-9)


def test_a_training_set_built_from_bigquery_is_the_lakes(redis_settings, monkeypatch, tmp_path):
    """`atelier train` with ATELIER_OFFLINE_STORE=bigquery: the training examples, the evaluation
    clients' and the products' tower inputs come from BigQuery's point-in-time joins, the same as
    from the lake."""
    import numpy as np
    import pandas as pd

    from atelier.context import RegionContext
    from atelier.models.recommend import dataset
    from atelier.models.recommend.two_tower import TrainConfig

    repo.apply(redis_settings, "eu")

    def build():
        ctx = RegionContext.of(redis_settings, "eu")
        events = dataset.read_events(ctx)
        w = dataset.windows(events, 4)
        return dataset.build(ctx, event_weights=TrainConfig().event_weights, cutoff=w.validation_cutoff, end=w.test_cutoff, events=events)

    def examples(data):
        parts = [data.train.parts.read(p) for p in data.train.parts.parts]
        return {k: np.concatenate([q[k] for q, _, _ in parts]) for k in parts[0][0]}, np.concatenate([r for _, r, _ in parts])

    lake = build()
    bq = _in_the_cloud(redis_settings, monkeypatch, tmp_path)
    pages = bq.stats.get("pages", 0)
    cloud = build()
    assert bq.stats["pages"] > pages + 10  # the features came from BigQuery's joins
    assert len(lake.eval.client_ids) >= 5 and list(lake.eval.client_ids) == list(cloud.eval.client_ids)
    assert len(examples(lake)[1]) > 100
    for ours, theirs in ((lake.eval.query, cloud.eval.query), (lake.candidate, cloud.candidate), (examples(lake)[0], examples(cloud)[0])):
        assert ours.keys() == theirs.keys()
        for name in ours:
            np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)
    np.testing.assert_array_equal(examples(lake)[1], examples(cloud)[1])
    pd.testing.assert_frame_equal(lake.products, cloud.products, check_dtype=False)
    assert lake.train.query_specs == cloud.train.query_specs  # the tower fitted on the same inputs
