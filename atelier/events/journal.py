"""The offline side of real-time events: an append-only journal per region, encrypted like the lake.

Each accepted batch becomes one *part*: a small dataset (`atelier.protect.parquet`) under
`<home>/stream/<region>/events/`, written in a staging folder, fsynced and renamed into place,
so a part is either whole or absent. A part is the durable record of its events; everything else
can be rebuilt from the parts.

The *ledger* (`ledger.sqlite` beside the parts) indexes them: each event id seen, each part, and
whether the part was applied to the online store yet. It holds ids and part names only,
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from atelier import crash
from atelier.context import RegionContext
from atelier.errors import AtelierError
from atelier.protect.parquet import MARKER, dataset_info, read_dataset, stage_of, write_dataset

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
# A batch's part is written with LZ4: Parquet took 0.38 ms for 1,000 events against zstd's 0.74
# (A/B pairs of batches: 1.4-2.8% of the intake's time), for a part 1.6x the size (52 against
# 32 KB) until `compact` rewrites the parts with zstd.
PART_CODEC = "lz4"
COMPACT_ROWS = 500_000  # a compacted part's events at most: what `Journal.compact` holds in memory at once


@dataclass
class Compaction:
    """What `Journal.compact` did: complete parts before and after, parts merged, parts written."""

    before: int
    after: int
    merged: int
    written: int


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
    """Every journaled event of the region, each event id once (the first part that holds it).

    A compaction may remove parts while they are read; their events are in the compacted part,
    in place before they go, so the parts are listed and read again."""
    for attempt in range(3):
        names = part_names(ctx)
        if not names:
            return SCHEMA.empty_table() if columns is None else SCHEMA.empty_table().select(columns)
        try:
            table = pa.concat_tables([read_dataset(parts_dir(ctx) / n, ctx.keys) for n in names])
        except (OSError, AtelierError):
            if attempt == 2 or all((parts_dir(ctx) / n / MARKER).exists() for n in names):
                raise
            continue
        table = _each_id_once(table)
        return table if columns is None else table.select(columns)
    raise AssertionError("unreachable")


def _each_id_once(table: pa.Table) -> pa.Table:
    """The rows of `table` whose event id no earlier row holds (a batch journaled twice: resent
    after a crash that lost the ledger's commit, or parts compacted twice)."""
    ids = table.column("event_id")
    if pc.count_distinct(ids).as_py() == table.num_rows:
        return table
    seen: set[str] = set()
    keep = [not (e in seen or seen.add(e)) for e in ids.to_pylist()]
    return table.filter(pa.array(keep))


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
        self.db.execute("PRAGMA cache_size=-65536")
        self.db.execute("PRAGMA wal_autocheckpoint=10000")
        # An event is seen under its time and id (`ledger_keys`): a resent event carries both. Keyed
        # by its time first, a batch of a live feed's events (seconds old) lands on the last few
        # pages of the table's one B-tree, where keyed by the id alone (random) it touched about a
        # page per event: 1,000 new ids took 2.1 ms, and 5.1-5.6 ms once the ledger held 300,000,
        # against 1.2-1.3 ms at either size keyed by time (benchmarks/freshness.py, "ledger").
        self.db.execute("CREATE TABLE IF NOT EXISTS seen_events (event_key TEXT PRIMARY KEY) WITHOUT ROWID")
        self._upgrade()
        self.db.execute("CREATE TABLE IF NOT EXISTS parts (part TEXT PRIMARY KEY, applied INTEGER NOT NULL DEFAULT 0)")
        # What recovery asks on every batch: the parts not applied yet, a handful among all of them.
        self.db.execute("CREATE INDEX IF NOT EXISTS parts_unapplied ON parts (part) WHERE applied = 0")
        # A compaction under way (`compact`): the parts it merges, and the part they merge into.
        self.db.execute("CREATE TABLE IF NOT EXISTS replaced (part TEXT PRIMARY KEY, merged TEXT NOT NULL)")

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        with _THREADS, open(self.dir / ".lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _upgrade(self) -> None:
        """A ledger of an earlier version held event ids alone (`event_ids`, before that `events`):
        its keys are rebuilt from the parts, which are the record, and the old tables dropped. Once,
        by the first process to open it (the others find it done)."""
        if not self._old_tables():
            return
        # Another process may be rebuilding it: a journal's parts take about 3 ms each to read, so
        # wait for it as long as that takes, not the 30 s a batch's transaction is given.
        self.db.execute("PRAGMA busy_timeout = 3600000")
        try:
            with _transaction(self.db):
                old = self._old_tables()  # again, now that no other process is writing
                for name in part_names(self.ctx) if old else []:
                    self.db.execute("INSERT OR IGNORE INTO seen_events (event_key) SELECT value FROM json_each(?)", (ledger_text(self._keyed(name)),))
                for table in old:
                    self.db.execute(f"DROP TABLE {table}")
        finally:
            self.db.execute("PRAGMA busy_timeout = 30000")

    def _old_tables(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('events', 'event_ids')")}

    def _keyed(self, name: str) -> pa.Table:
        """A part's columns that make its events' ledger keys."""
        return read_dataset(parts_dir(self.ctx) / name, self.ctx.keys, columns=["event_id", "event_timestamp"])

    def seen(self, events: pa.Table, keys: str | None = None) -> set[str]:
        """The ids of those of `events` the journal holds already; `keys`: their `ledger_text`,
        where the caller has it."""
        rows = self.db.execute("SELECT event_key FROM seen_events WHERE event_key IN (SELECT value FROM json_each(?))", (keys or ledger_text(events),))
        return {key[_ID_AT:] for (key,) in rows}

    def append(self, events: pa.Table) -> str:
        """Write `events` as one durable part and index it (not yet applied online); its name."""
        name = self.write_part(events)
        self.index(name, events)
        return name

    def write_part(self, events: pa.Table) -> str:
        """Write `events` as one durable part, its event ids not indexed yet; its name. The part is
        entered in the ledger, as not applied, before it is written: if its writer dies, recovery
        finds it by one indexed query (`unapplied`)."""
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        self.db.execute("INSERT INTO parts (part, applied) VALUES (?, 0)", (name,))
        target = parts_dir(self.ctx) / name
        write_dataset(target, events.select(SCHEMA.names).cast(SCHEMA), self.ctx.keys, dictionary=False, compression=PART_CODEC)
        _fsync_tree(target)
        crash.point("events.part")  # the part is on disk, its ids not in the ledger yet
        return name

    def index(self, name: str, events: pa.Table, keys: str | None = None) -> None:
        """Record the part and its events (`ledger_keys`), as not applied online yet; `keys` as `seen`'s."""
        keys = keys or ledger_text(events)
        with _transaction(self.db):
            self.db.execute("INSERT OR IGNORE INTO parts (part, applied) VALUES (?, 0)", (name,))
            # One statement over the keys as JSON: SQLite unpacks them, not a Python tuple per row
            # (0.8-1 ms less per 1,000 ids than executemany).
            self.db.execute("INSERT OR IGNORE INTO seen_events (event_key) SELECT value FROM json_each(?)", (keys,))

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
                    self.index(name, self._keyed(name))
        out = []
        for (name,) in self.db.execute("SELECT part FROM parts WHERE applied = 0 ORDER BY part").fetchall():
            if (folder / name / MARKER).exists():
                out.append(name)
            else:
                self._forget_unfinished(name)
        return out

    def part(self, name: str) -> pa.Table:
        return read_dataset(parts_dir(self.ctx) / name, self.ctx.keys)

    def compact(self, max_rows: int = COMPACT_ROWS, progress: Callable[[int], None] = lambda n: None) -> Compaction:
        """Merge the applied parts, in runs of consecutive ones, into parts of up to `max_rows`
        events each (a part of half that or more is left as it is). `progress` gets the parts merged.

        A service writes a part per batch: a day at one batch a second is 86,400 parts, each read,
        decrypted and listed on its own by `read`, the audit and the BigQuery loader (about 3 ms a
        part). For each run, the ledger first records the merged part (applied) and the parts it
        replaces; then the merged part is written and fsynced; then the old folders go, and last
        their entries. A compaction killed half-way is finished by the next one (`_finish`): rolled
        forward once the merged part is complete, back before. Meanwhile `read` may see both the old
        parts and the merged one, and counts each event once. Nothing here changes a part that is
        not applied, or the ledger's event ids: ingestion goes on, and recovery finds what it needs."""
        folder = parts_dir(self.ctx)
        with open(self.dir / ".compact.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one compaction at a time; writers are not held
            try:
                for (into,) in self.db.execute("SELECT DISTINCT merged FROM replaced").fetchall():
                    self._finish(into)
                before = part_names(self.ctx)
                applied = [r[0] for r in self.db.execute("SELECT part FROM parts WHERE applied = 1 ORDER BY part")]
                rows = {n: dataset_info(folder / n)["rows"] for n in applied if (folder / n / MARKER).exists()}
                runs = _runs(applied, rows, max_rows)
                for run in runs:
                    name = f"{run[0].split('-')[0]}-{uuid.uuid4().hex[:8]}"  # sorts where the run began
                    with _transaction(self.db):
                        self.db.execute("INSERT INTO parts (part, applied) VALUES (?, 1)", (name,))
                        self.db.execute("INSERT INTO replaced (part, merged) SELECT value, ? FROM json_each(?)", (name, json.dumps(run)))
                    table = _each_id_once(pa.concat_tables([read_dataset(folder / n, self.ctx.keys) for n in run]))
                    write_dataset(folder / name, table, self.ctx.keys)
                    _fsync_tree(folder / name)
                    crash.point("events.compact.written")  # the merged part and the old ones on disk
                    self._finish(name)
                    progress(len(run))
                return Compaction(len(before), len(part_names(self.ctx)), sum(map(len, runs)), len(runs))
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _finish(self, merged: str) -> None:
        """End the compaction into `merged`: forward (the old parts removed, then their entries)
        once it is complete on disk, back (its entry and staging removed) before."""
        folder = parts_dir(self.ctx)
        old = [r[0] for r in self.db.execute("SELECT part FROM replaced WHERE merged = ?", (merged,))]
        if (folder / merged / MARKER).exists():
            for name in old:
                shutil.rmtree(folder / name, ignore_errors=True)
            _fsync_dir(folder)
            crash.point("events.compact.removed")  # the old folders gone, the ledger still lists them
            with _transaction(self.db):
                self.db.execute("DELETE FROM parts WHERE part IN (SELECT value FROM json_each(?))", (json.dumps(old),))
                self.db.execute("DELETE FROM replaced WHERE merged = ?", (merged,))
        else:
            self._forget_unfinished(merged)

    def _forget_unfinished(self, name: str) -> None:
        """A part whose writer died before it was complete: its staging folder and its entries go
        (none of its events was acknowledged, or, for a merged part, none lived only there)."""
        shutil.rmtree(stage_of(parts_dir(self.ctx) / name), ignore_errors=True)
        with _transaction(self.db):
            self.db.execute("DELETE FROM parts WHERE part = ?", (name,))
            self.db.execute("DELETE FROM replaced WHERE merged = ?", (name,))

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_TIME_WIDTH = 20  # digits of a time in microseconds, its sign included: any int64
_ID_AT = _TIME_WIDTH + 1


def ledger_keys(events: pa.Table) -> list[str]:
    """Each event's key in the ledger: its time (microseconds, UTC, zero-padded to sort as numbers
    do) and its id. A resent event has the same time and id, so it is found; an id sent again
    with another time is another event."""
    times = pc.cast(pc.cast(events.column("event_timestamp"), pa.int64()), pa.string())
    keys = pc.binary_join_element_wise(pc.utf8_lpad(times, _TIME_WIDTH, "0"), events.column("event_id"), " ")
    return keys.to_pylist()


def ledger_text(events: pa.Table, keys: list[str] | None = None) -> str:
    """`ledger_keys` (or `keys`, the caller's copy of them) as the JSON text the ledger's statements
    unpack (`json_each`). A batch's is built once, for its lookup and its index: 0.1-0.2 ms each time."""
    return json.dumps(ledger_keys(events) if keys is None else keys)


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _runs(names: list[str], rows: dict[str, int], max_rows: int) -> list[list[str]]:
    """Runs of consecutive small parts (in `rows`, under half of `max_rows`), each run's rows at
    most `max_rows`; runs of one part are left out (there is nothing to merge)."""
    runs, run, total = [], [], 0
    for name in names:
        n = rows.get(name)
        if n is None or n >= max_rows // 2 or total + n > max_rows:
            if len(run) > 1:
                runs.append(run)
            run, total = [], 0
        if n is not None and n < max_rows // 2:
            run.append(name)
            total += n
    if len(run) > 1:
        runs.append(run)
    return runs


def _fsync_dir(path: Path) -> None:
    """Flush a file or a folder (its entries) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(folder: Path) -> None:
    """Flush a freshly renamed dataset folder's files, the folder and its parent to disk."""
    for p in [*folder.iterdir(), folder, folder.parent]:
        _fsync_dir(p)
