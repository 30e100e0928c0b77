"""The offline side of real-time events: an append-only journal per region, encrypted like the lake.

Each accepted batch becomes one *part*: a small dataset (`atelier.protect.parquet`) under
`<home>/stream/<region>/events/`, written in a staging folder, fsynced and renamed into place,
so a part is either whole or absent. A part is the durable record of its events; everything else
can be rebuilt from the parts.

The *ledger* (`ledger.sqlite` beside the parts) indexes them: each event id, the part that holds
it, and whether the part was applied to the online store yet. It holds ids and part names only,
never client data. It answers "was this event seen?" for a batch in one query, and "what is not
online yet?" for recovery. A part is entered in the ledger, not applied, before it is written
(`write_part`), so "what is not online yet?" is one indexed query whatever the journal's size,
and a part another process left half-done is found by the next batch. Only a power cut can lose
a ledger row (SQLite's `synchronous=NORMAL`): the first recovery of each process also lists the
parts on disk (`unapplied(scan=True)`) and indexes those the ledger lost.

Readers (the feature pipeline, training) see the union of the lake's events and the journal's,
each event id once (`read`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from atelier import crash
from atelier.context import RegionContext
from atelier.protect.parquet import MARKER, read_dataset, write_dataset

# The lake's event columns (atelier.data.lake.finalize_events), and the two a streamed event adds.
SCHEMA = pa.schema([
    pa.field("event_id", pa.string()),
    pa.field("client_id", pa.string()),
    pa.field("product_id", pa.string()),
    pa.field("event_type", pa.string()),
    pa.field("event_timestamp", pa.timestamp("us", "UTC")),
    pa.field("channel", pa.string()),
    pa.field("store_id", pa.string()),
    pa.field("country", pa.string()),
    pa.field("quantity", pa.int64()),
    pa.field("amount", pa.float64()),
    pa.field("received_at", pa.timestamp("us", "UTC")),
])
_THREADS = threading.Lock()


def stream_dir(ctx: RegionContext) -> Path:
    return ctx.paths.stream(ctx.region)


def parts_dir(ctx: RegionContext) -> Path:
    return stream_dir(ctx) / "events"


def part_names(ctx: RegionContext) -> list[str]:
    """The complete parts, oldest first (a part's name starts with its write time)."""
    folder = parts_dir(ctx)
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(".") and (p / MARKER).exists())


def read(ctx: RegionContext, columns: list[str] | None = None) -> pa.Table:
    """Every journaled event of the region, each event id once (the first part that holds it)."""
    names = part_names(ctx)
    if not names:
        return SCHEMA.empty_table() if columns is None else SCHEMA.empty_table().select(columns)
    table = pa.concat_tables([read_dataset(parts_dir(ctx) / n, ctx.keys) for n in names])
    ids = table.column("event_id")
    if pc.count_distinct(ids).as_py() != table.num_rows:  # a batch journaled twice (resent after a crash)
        seen: set[str] = set()
        keep = [not (e in seen or seen.add(e)) for e in ids.to_pylist()]
        table = table.filter(pa.array(keep))
    return table if columns is None else table.select(columns)


class Journal:
    """A region's journal, its ledger, and the lock that makes one writer at a time.

    The lock is a file lock: it serializes the writers of one machine (a service's workers, a
    replay). Where several machines ingest one region, the offline side is BigQuery's and the
    lock the online store's (not built here)."""

    def __init__(self, ctx: RegionContext):
        self.ctx = ctx
        self.dir = stream_dir(ctx)
        parts_dir(ctx).mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.dir / "ledger.sqlite", isolation_level=None, check_same_thread=False, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        # NORMAL: a commit may be lost to a power cut, never corrupted. The parts are the record;
        # a part the ledger lost is indexed again, and applying a part twice changes nothing.
        self.db.execute("PRAGMA synchronous=NORMAL")
        # Event ids are random keys: each batch touches ~one index page per event. With SQLite's
        # defaults (2 MB of cache, a checkpoint every 1,000 WAL pages) a batch's ledger write grew
        # from 5 to 27 ms over the first 300,000 events; with these, 5.5 to 9 ms
        # (benchmarks/freshness.py measures both).
        self.db.execute("PRAGMA cache_size=-65536")
        self.db.execute("PRAGMA wal_autocheckpoint=10000")
        self.db.execute("CREATE TABLE IF NOT EXISTS events (event_id TEXT PRIMARY KEY, part TEXT NOT NULL)")
        self.db.execute("CREATE TABLE IF NOT EXISTS parts (part TEXT PRIMARY KEY, applied INTEGER NOT NULL DEFAULT 0)")
        # What recovery asks on every batch: the parts not applied yet, a handful among all of them.
        self.db.execute("CREATE INDEX IF NOT EXISTS parts_unapplied ON parts (part) WHERE applied = 0")

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        with _THREADS, open(self.dir / ".lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def seen(self, ids: list[str]) -> set[str]:
        """Which of `ids` the journal holds already."""
        return {r[0] for r in self.db.execute("SELECT event_id FROM events WHERE event_id IN (SELECT value FROM json_each(?))", (json.dumps(ids),))}

    def append(self, events: pa.Table) -> str:
        """Write `events` as one durable part and index it (not yet applied online); its name."""
        name = self.write_part(events)
        self.index(name, events.column("event_id").to_pylist())
        return name

    def write_part(self, events: pa.Table) -> str:
        """Write `events` as one durable part, its event ids not indexed yet; its name. The part is
        entered in the ledger, as not applied, before it is written: if its writer dies, recovery
        finds it by one indexed query (`unapplied`)."""
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        self.db.execute("INSERT INTO parts (part, applied) VALUES (?, 0)", (name,))
        target = parts_dir(self.ctx) / name
        write_dataset(target, events.select(SCHEMA.names).cast(SCHEMA), self.ctx.keys)
        _fsync_tree(target)
        crash.point("events.part")  # the part is on disk, its ids not in the ledger yet
        return name

    def index(self, name: str, ids: list[str]) -> None:
        """Record the part and its event ids, as not applied online yet."""
        with _transaction(self.db):
            self.db.execute("INSERT OR IGNORE INTO parts (part, applied) VALUES (?, 0)", (name,))
            # One statement over the ids as JSON: SQLite unpacks them, not a Python tuple per row
            # (0.8-1 ms less per 1,000 ids than executemany).
            self.db.execute("INSERT OR IGNORE INTO events (event_id, part) SELECT value, ? FROM json_each(?)", (name, json.dumps(ids)))

    def mark_applied(self, name: str) -> None:
        self.db.execute("UPDATE parts SET applied = 1 WHERE part = ?", (name,))

    def unapplied(self, scan: bool = False) -> list[str]:
        """Complete parts not yet applied online, oldest first. An entry whose part never became
        complete (its writer died before the rename; its events were never acknowledged) is
        removed. With `scan`, the parts on disk are listed too, and those the ledger lost are
        indexed: the journal's size in work, done once per process."""
        folder = parts_dir(self.ctx)
        if scan:
            known = {r[0] for r in self.db.execute("SELECT part FROM parts")}
            for name in part_names(self.ctx):
                if name not in known:
                    ids = read_dataset(folder / name, self.ctx.keys, columns=["event_id"]).column("event_id").to_pylist()
                    self.index(name, ids)
        out = []
        for (name,) in self.db.execute("SELECT part FROM parts WHERE applied = 0 ORDER BY part").fetchall():
            if (folder / name / MARKER).exists():
                out.append(name)
            else:
                shutil.rmtree(folder / f".{name}.staging", ignore_errors=True)  # atelier.protect.parquet.DatasetWriter's
                self.db.execute("DELETE FROM parts WHERE part = ?", (name,))
        return out

    def part(self, name: str) -> pa.Table:
        return read_dataset(parts_dir(self.ctx) / name, self.ctx.keys)

    def close(self) -> None:
        self.db.close()


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _fsync_tree(folder: Path) -> None:
    """Flush a freshly renamed dataset folder's files, the folder and its parent to disk."""
    for p in folder.iterdir():
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    for d in (folder, folder.parent):
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
