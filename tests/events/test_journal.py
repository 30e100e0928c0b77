"""The journal's ledger and recovery, without an online store: a part is entered before it is
written, so a writer that dies leaves nothing counted, and a part the ledger lost is found again."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timezone

import pyarrow as pa
import pytest

from atelier.context import RegionContext
from atelier.events import journal
from atelier.events.batch import Event, to_table
from atelier.protect.parquet import MARKER

WRITER = """
import sys
from datetime import datetime, timezone
from atelier.context import RegionContext
from atelier.events.batch import Event, to_table
from atelier.events.journal import Journal
from atelier.settings import Settings
ctx = RegionContext.of(Settings(), "eu")
at = datetime(2026, 12, 1, 10, tzinfo=timezone.utc)
Journal(ctx).write_part(to_table([Event(event_id=f"d{i}", client_id="c", product_id="p", event_type="view", event_timestamp=at) for i in range(3)], at))
"""


AT = datetime(2026, 12, 1, 10, tzinfo=timezone.utc)


def _table(prefix: str, n: int = 3) -> pa.Table:
    return _of([f"{prefix}{i}" for i in range(n)])


def _of(ids: list[str], at: datetime = AT) -> pa.Table:
    """Events with these ids, all at `at` (the ledger knows an event by its time and id)."""
    return to_table([Event(event_id=i, client_id="c", product_id="p", event_type="view", event_timestamp=at) for i in ids], at)


def test_a_writer_killed_half_way_through_its_part_leaves_no_trace_in_the_ledger(settings):
    """Killed (SIGKILL) with the part's Parquet file written but the part not complete: the next
    recovery forgets the entry and the staging folder, and none of its events counts as seen."""
    died = subprocess.run([sys.executable, "-c", WRITER], env={**os.environ, "ATELIER_CRASH_AT": "dataset.part"}, capture_output=True, text=True, timeout=120)
    assert died.returncode == -9, died.stderr[-2000:]
    ctx = RegionContext.of(settings, "eu")
    j = journal.Journal(ctx)
    assert j.db.execute("SELECT COUNT(*) FROM parts WHERE applied = 0").fetchone()[0] == 1  # entered before it was written
    assert [p.name for p in journal.parts_dir(ctx).iterdir() if p.name.endswith(".staging")]
    assert j.unapplied() == []
    assert j.db.execute("SELECT COUNT(*) FROM parts").fetchone()[0] == 0
    assert list(journal.parts_dir(ctx).iterdir()) == []
    assert j.seen(_of(["d0", "d1", "d2"])) == set() and journal.read(ctx).num_rows == 0


def test_a_part_is_unapplied_from_before_it_is_written_until_marked_applied(settings):
    j = journal.Journal(RegionContext.of(settings, "eu"))
    first = j.write_part(_table("a"))
    assert j.unapplied() == [first] and j.seen(_of(["a0"])) == set()  # its ids come with `index`
    j.index(first, _table("a"))
    second = j.append(_table("b"))
    assert j.unapplied() == [first, second] and j.seen(_of(["a1", "b2", "zz"])) == {"a1", "b2"}
    j.mark_applied(first)
    assert j.unapplied() == [second]


def test_a_part_the_ledger_lost_is_found_by_a_scan_of_the_disk(settings):
    """A power cut can lose the ledger's last commits (synchronous=NORMAL), never the fsynced part:
    the first recovery of a process lists the disk and indexes such a part again."""
    ctx = RegionContext.of(settings, "eu")
    j = journal.Journal(ctx)
    name = j.append(_table("l"))
    j.mark_applied(name)
    j.db.execute("DELETE FROM seen_events")
    j.db.execute("DELETE FROM parts")
    assert (journal.parts_dir(ctx) / name / MARKER).exists()
    assert j.unapplied(scan=True) == [name]
    assert j.seen(_table("l")) == {"l0", "l1", "l2"}


def test_an_event_is_seen_under_its_time_and_id(settings):
    """A resent event (the same id and time) is seen, in a batch of others; the same id at another
    time is another event. Keys sort by time, then id, as the ledger's B-tree holds them."""
    j = journal.Journal(RegionContext.of(settings, "eu"))
    j.append(_of(["x", "y"]))
    later = AT.replace(hour=11)
    assert j.seen(_of(["y", "z"])) == {"y"}
    assert j.seen(_of(["x"], later)) == set()
    early = datetime(1969, 12, 31, 23, 59, tzinfo=timezone.utc)  # before 1970: a negative time
    keys = journal.ledger_keys(pa.concat_tables([_of(["b"], later), _of(["a"], AT), _of(["c"], AT), _of(["d"], early)]))
    assert keys[1] == "00001796119200000000 a" and len({len(k) for k in keys}) == 1
    assert sorted(keys)[1:] == [keys[1], keys[2], keys[0]]


@pytest.mark.parametrize("old", ["events", "event_ids"])
def test_a_ledger_of_an_earlier_layout_is_rebuilt_from_the_parts_once(settings, old):
    """Ledgers written before events were keyed by time held ids alone: `event_ids (event_id)`,
    and before that `events (event_id, part)`. Opened now, their keys are rebuilt from the parts
    (the record), the old table goes, and a resent event is still a duplicate."""
    import sqlite3

    ctx = RegionContext.of(settings, "eu")
    with journal.Journal(ctx) as j:
        j.append(_of(["old1", "old2"]))
    db = sqlite3.connect(journal.stream_dir(ctx) / "ledger.sqlite")
    db.execute("DROP TABLE seen_events")
    db.execute(f"CREATE TABLE {old} (event_id TEXT PRIMARY KEY{', part TEXT' if old == 'events' else ''})")
    db.executemany(f"INSERT INTO {old} (event_id) VALUES (?)", [("old1",), ("old2",)])
    db.commit()
    db.close()
    with journal.Journal(ctx) as j:
        assert j.seen(_of(["old1", "old2", "new"])) == {"old1", "old2"}
        assert not j.db.execute(f"SELECT 1 FROM sqlite_master WHERE name = '{old}'").fetchone()
        j.db.execute("DELETE FROM seen_events WHERE event_key LIKE '% old2'")
    with journal.Journal(ctx) as j:  # once: opening it again rebuilds nothing
        assert j.seen(_of(["old1", "old2"])) == {"old1"}


COMPACTOR = """
from atelier.context import RegionContext
from atelier.events.journal import Journal
from atelier.settings import Settings
Journal(RegionContext.of(Settings(), "eu")).compact(max_rows=10)
"""


def _journal_of_parts(settings, applied: int, unapplied: int = 0):
    ctx = RegionContext.of(settings, "eu")
    j = journal.Journal(ctx)
    names = []
    for k in range(applied + unapplied):
        names.append(j.append(_table(f"p{k}-")))
        if k < applied:
            j.mark_applied(names[-1])
    return ctx, j, names


def _ids(ctx) -> list[str]:
    return sorted(journal.read(ctx).column("event_id").to_pylist())


def test_compaction_merges_applied_parts_and_keeps_every_event_once(settings):
    ctx, j, names = _journal_of_parts(settings, applied=7, unapplied=2)
    before = _ids(ctx)
    done = j.compact(max_rows=10)  # parts of 3 events: runs of 3 parts
    assert (done.before, done.merged, done.written) == (9, 6, 2)  # the 7th applied part is a run of one
    assert done.after == len(journal.part_names(ctx)) == 5
    assert _ids(ctx) == before and len(before) == 27
    assert j.unapplied() == names[7:]  # recovery's parts untouched
    assert all(not (journal.parts_dir(ctx) / n).exists() for n in names[:6])
    assert j.seen(_of(before)) == set(before)
    assert j.compact(max_rows=10).merged == 0  # the merged parts (9 events) are half the limit or more; the 7th has no small neighbour


def test_runs_take_consecutive_small_parts_up_to_the_row_limit():
    names = [f"{k:020d}-x" for k in range(7)]
    rows = dict(zip(names, [3, 3, 3, 3, 6, 3, 3]))
    del rows[names[5]]  # a part not complete on disk breaks a run
    assert journal._runs(names, rows, 10) == [names[0:3]]  # 3+3+3; then 3 alone; 6 is half of 10 or more; 3 alone


@pytest.mark.parametrize("point,parts", [("dataset.part", 3), ("events.compact.written", 4), ("events.compact.removed", 1)])
def test_a_compaction_killed_half_way_loses_and_doubles_nothing(settings, point, parts):
    """Killed while the merged part is written, once it is written (the old parts still there), or
    once the old folders are gone (the ledger still lists them): every event is read once, and the
    next compaction finishes the work, back or forward."""
    ctx, j, names = _journal_of_parts(settings, applied=3)
    before = _ids(ctx)
    died = subprocess.run([sys.executable, "-c", COMPACTOR], env={**os.environ, "ATELIER_CRASH_AT": point}, capture_output=True, text=True, timeout=120)
    assert died.returncode == -9, died.stderr[-2000:]
    assert len(journal.part_names(ctx)) == parts
    assert _ids(ctx) == before
    again = journal.Journal(ctx)
    assert again.unapplied(scan=True) == []  # nothing the ledger does not know: nothing applied online again
    again.compact(max_rows=10)
    assert len(journal.part_names(ctx)) == 1 and _ids(ctx) == before
    assert again.db.execute("SELECT COUNT(*) FROM parts").fetchone()[0] == 1
    assert again.db.execute("SELECT COUNT(*) FROM replaced").fetchone()[0] == 0
    assert again.seen(_of(before)) == set(before)
