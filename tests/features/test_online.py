"""The serving read path returns what Feast's own get_online_features returns."""

import datetime as dt

import pytest

from atelier.features import repo
from atelier.features.online import OnlineFeatures, feature_refs

NOW = dt.datetime(2026, 11, 28, tzinfo=dt.timezone.utc)


def _compare(settings):
    repo.apply(settings, "eu")
    repo.materialize(settings, "eu", end=NOW)
    store = repo.feature_store(settings, "eu")
    refs = feature_refs(store, "query_tower_v1")
    reader = OnlineFeatures(store, refs, timestamps=("client_activity",))
    ids = [f"EU{i:08d}" for i in range(0, 240)] + ["EU99999999"]
    ours, found = reader.get(ids)  # a big batch: commands built a column at a time
    feast = store.get_online_features(features=refs, entity_rows=[{"client_id": i} for i in ids]).to_dict()
    for name in reader.names:
        assert ours[name] == feast[name], name
    assert found[-1] is False and sum(found) > 50
    small, _ = reader.get(ids[:10] + ids[-1:])  # a small one: a plain pipeline
    assert {n: v for n, v in small.items()} == {n: v[:10] + v[-1:] for n, v in ours.items()}
    stamps = ours["_ts:client_activity"]
    assert stamps[-1] is None and all(t is None or t <= NOW for t in stamps) and sum(t is not None for t in stamps) > 50
    assert reader.get_one("EU99999999") is None
    return reader


@pytest.mark.redis
def test_redis_reader_matches_feast(redis_settings):
    reader = _compare(redis_settings)
    assert reader._redis is not None  # the direct path was used


def test_sqlite_reader_is_feast(settings):
    reader = _compare(settings)
    assert reader._redis is None
