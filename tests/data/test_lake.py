"""The lake is written atomically and only ever holds a region's own clients in its partition."""

import pyarrow as pa
import pytest

import atelier.data.generate as generate
from atelier.data.generate import generate_world
from atelier.data.lake import ResidencyError, assert_region_clients
from atelier.data.world import WorldSpec
from atelier.protect.keys import key_store
from atelier.protect.parquet import read_dataset


def _files(settings):
    return {str(p.relative_to(settings.home)): p.stat().st_mtime_ns for p in settings.paths.lake.rglob("*") if p.is_file()}


def test_partitions_hold_only_their_region(settings):
    for region, prefix in (("eu", "EU"), ("us", "US"), ("apac", "AP")):
        keys = key_store(settings, region)
        for table in ("clients", "events"):
            ids = read_dataset(settings.paths.client_table(table, region), keys, columns=["client_id"]).column("client_id")
            assert len(ids) > 0
            assert all(i.startswith(prefix) for i in ids.to_pylist())


def test_residency_is_enforced_at_the_write():
    with pytest.raises(ResidencyError, match="1 client\\(s\\) of another region would be written to region 'eu'") as e:
        assert_region_clients(pa.array(["EU00000001", "US00000002"]), "eu", where="clients/region=eu")
    assert "US00000002" in e.value.render()


def test_crash_mid_generation_leaves_previous_lake_intact(settings, monkeypatch):
    before = _files(settings)
    calls = {"n": 0}
    real = generate.simulate_events

    def crash_on_second_chunk(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(generate, "simulate_events", crash_on_second_chunk)
    with pytest.raises(RuntimeError, match="disk full"):
        generate_world(settings, WorldSpec(clients=300, products=40, chunk_clients=100))
    assert _files(settings) == before
    assert not [p for p in settings.home.rglob(".*staging*")], "no staging leftovers"


def test_regenerating_replaces_the_lake_whole(settings):
    manifest = generate_world(settings, WorldSpec(clients=90, products=40, events_per_client=5, seed=3, chunk_clients=1000))
    assert sum(manifest["counts"]["clients"].values()) == 90
    ids = read_dataset(settings.paths.client_table("clients", "eu"), key_store(settings, "eu")).num_rows
    assert ids == manifest["counts"]["clients"]["eu"]
