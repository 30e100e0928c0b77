"""Which clients a region holds, and the check that every write of client data goes through.

A client belongs to the region of its country (`atelier.regions`); its id is whatever the group's
client systems use, so an id alone says nothing about where a client lives. The lake decides:
when it is written, each client lands in its country's region partition, and that partition's
client table is the region's *roster*. Every later stage (features, online store, training sets,
model vocabularies) may hold only clients of its region's roster, and checks so before writing.
The residency audit uses the same rosters to find a client held outside its region.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from atelier.errors import AtelierError
from atelier.settings import Settings


class ResidencyError(AtelierError):
    pass


def refuse(bad: pa.Array, client_ids: pa.Array, region: str, where: str, why: str) -> None:
    """Raise if any row of `bad` is true: those clients must not be written to `region`."""
    bad = pc.fill_null(bad, True)
    n_bad = pc.sum(bad).as_py() or 0
    if n_bad:
        examples = pc.filter(client_ids, bad).slice(0, 5).to_pylist()
        raise ResidencyError(
            f"{n_bad} client(s) {why} would be written to region {region!r}",
            where=where,
            details=[f"client_id {c!r}" for c in examples],
            fix=f"a client belongs to the region of its country; write region {region!r}'s clients only",
        )


_ROSTERS: dict[Path, tuple[int, pa.Array]] = {}  # client table -> (marker mtime, ids)


def roster(settings: Settings, region: str) -> pa.Array:
    """The ids of the clients region `region` holds: its lake client table (empty before any lake).

    Cached until the lake is rewritten (the dataset's marker changes with every commit).
    """
    from atelier.protect.keys import key_store
    from atelier.protect.parquet import MARKER, read_dataset

    path = settings.paths.client_table("clients", region)
    marker = path / MARKER
    if not marker.exists():
        return pa.array([], pa.string())
    stamp = marker.stat().st_mtime_ns
    cached = _ROSTERS.get(path)
    if cached is None or cached[0] != stamp:
        table = read_dataset(path, key_store(settings, region), columns=["client_id"])
        cached = _ROSTERS[path] = (stamp, table.column("client_id").combine_chunks())
    return cached[1]


class RosterIndex:
    """Membership in a roster for many small batches: the real-time intake checks 1,000 ids at a time.

    `pc.is_in` hashes its whole value set on every call, so each batch paid for the region's size
    (about 1 ms per 30,000 clients: a third of a second at ten million). The index hashes the
    roster once, into a sorted array of 64-bit hashes (8 bytes a client, beside the roster's own
    Arrow array, held in hash order). A batch then costs a hash and a binary search per id, and
    every hash found is confirmed against the id itself: a collision never lets a client in.
    Python's `hash` is salted per process, which is fine for an index that lives in one.
    """

    def __init__(self, ids: pa.Array, hash_fn: Callable[[str], int] = hash):
        self._hash = hash_fn
        hashes = np.fromiter((hash_fn(v) for v in ids.to_pylist()), np.int64, len(ids))
        order = np.argsort(hashes, kind="stable")
        self._hashes = hashes[order]
        self._ids = ids.take(pa.array(order, pa.int64()))

    def __len__(self) -> int:
        return len(self._hashes)

    def missing(self, ids: list[str]) -> list[str]:
        """The ids (in their order, repeats kept) that the roster does not hold."""
        if not ids or not len(self._hashes):
            return list(ids)
        probe = np.fromiter((self._hash(v) for v in ids), np.int64, len(ids))
        lo = np.searchsorted(self._hashes, probe, side="left")
        hi = np.searchsorted(self._hashes, probe, side="right")
        first = pa.array(np.minimum(lo, len(self._hashes) - 1), pa.int64())
        same = pc.equal(self._ids.take(first), pa.array(ids, pa.string())).to_numpy(zero_copy_only=False)
        out = []
        for j in np.flatnonzero(~same):  # an id absent from the roster never equals the id at its place
            a, b = lo[j], hi[j]
            # a hash shared by several clients (rare): the others of that run are compared too
            if a == b or not any(self._ids[k].as_py() == ids[j] for k in range(a + 1, b)):
                out.append(ids[j])
        return out


_INDEXES: dict[Path, tuple[pa.Array, RosterIndex]] = {}  # client table -> (the roster indexed, its index)


def roster_index(settings: Settings, region: str) -> RosterIndex:
    """`RosterIndex` of `region`'s roster, rebuilt whenever `roster` reads a new one."""
    ids = roster(settings, region)
    path = settings.paths.client_table("clients", region)
    cached = _INDEXES.get(path)
    if cached is None or cached[0] is not ids:
        cached = _INDEXES[path] = (ids, RosterIndex(ids))
    return cached[1]


def assert_region_clients(settings: Settings, region: str, client_ids: pa.Array | pa.ChunkedArray, where: str) -> None:
    """Refuse any client that is not on `region`'s roster (anonymous rows, null ids, pass)."""
    ids = client_ids.combine_chunks() if isinstance(client_ids, pa.ChunkedArray) else client_ids
    outside = pc.invert(pc.is_in(ids, value_set=roster(settings, region)))
    outside = pc.and_(outside, pc.is_valid(ids))
    refuse(outside, ids, region, where, "not held by this region (see its lake client table)")
