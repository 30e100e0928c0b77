"""Which clients a region holds, and the check that every write of client data goes through.

A client belongs to the region of its country (`atelier.regions`); its id is whatever the group's
client systems use, so an id alone says nothing about where a client lives. The lake decides:
when it is written, each client lands in its country's region partition, and that partition's
client table is the region's *roster*. Every later stage (features, online store, training sets,
model vocabularies) may hold only clients of its region's roster, and checks so before writing.
The residency audit uses the same rosters to find a client held outside its region.
"""

from __future__ import annotations

from pathlib import Path

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


def assert_region_clients(settings: Settings, region: str, client_ids: pa.Array | pa.ChunkedArray, where: str) -> None:
    """Refuse any client that is not on `region`'s roster (anonymous rows, null ids, pass)."""
    ids = client_ids.combine_chunks() if isinstance(client_ids, pa.ChunkedArray) else client_ids
    outside = pc.invert(pc.is_in(ids, value_set=roster(settings, region)))
    outside = pc.and_(outside, pc.is_valid(ids))
    refuse(outside, ids, region, where, "not held by this region (see its lake client table)")
