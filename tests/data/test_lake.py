"""The lake is written atomically and only ever holds a region's own clients in its partition."""

import pyarrow as pa
import pytest

import atelier.data.generate as generate
from atelier.data.generate import generate_world
from atelier.data.lake import LakeWriter
from atelier.data.world import WorldSpec
from atelier.protect.keys import key_store
from atelier.protect.parquet import read_dataset
from atelier.protect.residency import ResidencyError, assert_region_clients, roster
from atelier.regions import region_of_country


def _files(settings):
    return {str(p.relative_to(settings.home)): p.stat().st_mtime_ns for p in settings.paths.lake.rglob("*") if p.is_file()}


def test_partitions_hold_only_their_region(settings):
    for region in ("eu", "us", "apac"):
        keys = key_store(settings, region)
        clients = read_dataset(settings.paths.client_table("clients", region), keys, columns=["client_id", "country"])
        assert clients.num_rows > 0
        assert {region_of_country(c) for c in clients.column("country").to_pylist()} == {region}
        events = read_dataset(settings.paths.client_table("events", region), keys, columns=["client_id"]).column("client_id")
        assert len(events) > 0 and set(events.to_pylist()) <= set(clients.column("client_id").to_pylist())


def test_lake_refuses_a_client_whose_country_is_in_another_region(settings, tmp_path):
    writer = LakeWriter(settings, tmp_path / "stage")
    clients = pa.table({"client_id": ["anne", "bob"], "country": ["FR", "US"]})
    with pytest.raises(ResidencyError, match="1 client\\(s\\) whose country is in another region would be written to region 'eu'") as e:
        writer.append("clients", "eu", clients)
    assert "'bob'" in e.value.render() and "'anne'" not in e.value.render()
    assert not (tmp_path / "stage").exists()


def test_lake_refuses_events_of_a_client_it_does_not_hold_here(settings, tmp_path):
    writer = LakeWriter(settings, tmp_path / "stage")
    writer._check_residency("clients", "eu", pa.table({"client_id": ["anne"], "country": ["FR"]}))
    events = pa.table({"client_id": ["anne", "carl", None, None], "country": [None, None, "DE", "JP"]})
    with pytest.raises(ResidencyError, match="2 client\\(s\\) of another region") as e:
        writer._check_residency("events", "eu", events)
    assert "'carl'" in e.value.render() and "None" in e.value.render()  # carl is not eu's; the JP line neither


def test_later_stages_refuse_clients_off_the_regions_roster(settings):
    eu, us = roster(settings, "eu").to_pylist(), roster(settings, "us").to_pylist()
    assert eu and us and not set(eu) & set(us)
    assert_region_clients(settings, "eu", pa.array(eu[:3]), where="x")  # the region's own: fine
    with pytest.raises(ResidencyError, match="1 client\\(s\\) not held by this region") as e:
        assert_region_clients(settings, "eu", pa.array([eu[0], us[0]]), where="online store")
    assert repr(us[0]) in e.value.render()


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
