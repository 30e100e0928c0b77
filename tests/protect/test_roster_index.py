"""The roster index of the real-time intake (atelier.protect.residency.RosterIndex) says what
Arrow's `is_in` says, hash collisions included, and is the one the intake uses."""

from __future__ import annotations

import random

import pyarrow as pa
import pyarrow.compute as pc

from atelier.protect.residency import RosterIndex, roster, roster_index


def _is_in_says(roster_ids: pa.Array, ids: list[str]) -> list[str]:
    mask = pc.invert(pc.is_in(pa.array(ids, pa.string()), value_set=roster_ids)).to_pylist()
    return [i for i, m in zip(ids, mask) if m]


def test_the_index_finds_what_is_in_finds():
    rng = random.Random(7)
    held = pa.array([f"client-{rng.randrange(10**9)}" for _ in range(5_000)])
    index = RosterIndex(held)
    batch = [*rng.sample(held.to_pylist(), 300), *(f"stranger-{i}" for i in range(50)), held[0].as_py(), "", "client-"]
    rng.shuffle(batch)
    assert index.missing(batch) == _is_in_says(held, batch) and len(index.missing(batch)) == 52


def test_a_shared_hash_never_lets_a_client_in():
    """With a hash of 4 values every id shares its hash with a quarter of the roster: only the
    ids themselves decide."""
    held = pa.array(["ana", "bo", "cyd", "dee", "ed", "flo", "gus", "hal"])
    index = RosterIndex(held, hash_fn=lambda s: len(s) % 4)
    batch = ["ana", "eve", "bo", "zed", "hal", "al", "gus", "x" * 40]
    assert index.missing(batch) == _is_in_says(held, batch) == ["eve", "zed", "al", "x" * 40]
    assert RosterIndex(pa.array([], pa.string())).missing(["ana"]) == ["ana"]


def test_the_intake_index_is_the_regions_roster_and_follows_a_new_lake(settings):
    from atelier.protect.parquet import read_dataset, write_dataset
    from atelier.context import RegionContext

    eu = roster(settings, "eu")
    index = roster_index(settings, "eu")
    assert len(index) == len(eu) and index.missing(eu.to_pylist()) == []
    us = roster(settings, "us").to_pylist()[:3]
    assert index.missing(us) == us
    folder = settings.paths.client_table("clients", "eu")
    clients = read_dataset(folder, RegionContext.of(settings, "eu").keys)
    write_dataset(folder, clients.slice(1), RegionContext.of(settings, "eu").keys)  # a client erased
    assert roster_index(settings, "eu").missing([eu[0].as_py()]) == [eu[0].as_py()]
