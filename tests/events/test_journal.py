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


def _table(prefix: str, n: int = 3) -> pa.Table:
    at = datetime(2026, 12, 1, 10, tzinfo=timezone.utc)
    return to_table([Event(event_id=f"{prefix}{i}", client_id="c", product_id="p", event_type="view", event_timestamp=at) for i in range(n)], at)


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
    assert j.seen(["d0", "d1", "d2"]) == set() and journal.read(ctx).num_rows == 0


def test_a_part_is_unapplied_from_before_it_is_written_until_marked_applied(settings):
    j = journal.Journal(RegionContext.of(settings, "eu"))
    first = j.write_part(_table("a"))
    assert j.unapplied() == [first] and j.seen(["a0"]) == set()  # its ids come with `index`
    j.index(first, ["a0", "a1", "a2"])
    second = j.append(_table("b"))
    assert j.unapplied() == [first, second] and j.seen(["a1", "b2", "zz"]) == {"a1", "b2"}
    j.mark_applied(first)
    assert j.unapplied() == [second]


def test_a_part_the_ledger_lost_is_found_by_a_scan_of_the_disk(settings):
    """A power cut can lose the ledger's last commits (synchronous=NORMAL), never the fsynced part:
    the first recovery of a process lists the disk and indexes such a part again."""
    ctx = RegionContext.of(settings, "eu")
    j = journal.Journal(ctx)
    name = j.append(_table("l"))
    j.mark_applied(name)
    j.db.execute("DELETE FROM event_ids")
    j.db.execute("DELETE FROM parts")
    assert (journal.parts_dir(ctx) / name / MARKER).exists()
    assert j.unapplied(scan=True) == [name]
    assert j.seen(["l0", "l1", "l2"]) == {"l0", "l1", "l2"}


def test_a_ledger_of_the_earlier_layout_keeps_its_ids(settings):
    """Ledgers written before the ids stood alone held `events (event_id, part)`: opened now, their
    ids move to `event_ids` once, and a resent event is still a duplicate."""
    import sqlite3

    ctx = RegionContext.of(settings, "eu")
    journal.Journal(ctx).close()
    db = sqlite3.connect(journal.stream_dir(ctx) / "ledger.sqlite")
    db.execute("DROP TABLE event_ids")
    db.execute("CREATE TABLE events (event_id TEXT PRIMARY KEY, part TEXT NOT NULL)")
    db.executemany("INSERT INTO events VALUES (?, ?)", [("old1", "p"), ("old2", "p")])
    db.commit()
    db.close()
    with journal.Journal(ctx) as j:
        assert j.seen(["old1", "old2", "new"]) == {"old1", "old2"}
        assert not j.db.execute("SELECT 1 FROM sqlite_master WHERE name = 'events'").fetchone()
    with journal.Journal(ctx) as j:  # once: opening it again changes nothing
        assert j.seen(["old1", "new"]) == {"old1"}


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
    assert j.seen(before) == set(before)
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
    assert again.seen(before) == set(before)
