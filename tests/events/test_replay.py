"""`atelier events replay`: a file of events into a region, paced, checked as POST /events checks them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from atelier.context import RegionContext
from atelier.events import journal, replay
from atelier.events.batch import Event
from atelier.features import repo
from atelier.protect.residency import roster

ATELIER = str(Path(sys.executable).with_name("atelier"))


def _file(path: Path, client: str, products: list[str], bad_row: int | None = None) -> Path:
    start = datetime.now(timezone.utc) - timedelta(hours=1)
    rows = [{"event_id": f"r{i}", "client_id": client, "product_id": p, "event_type": "view", "event_timestamp": (start + timedelta(seconds=i)).isoformat()}
            for i, p in enumerate(products)]
    if bad_row is not None:
        rows[bad_row]["event_type"] = "like"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_replay_writes_the_file_once_and_a_bad_file_sends_nothing(settings, home, tmp_path):
    repo.apply(settings, "eu")
    client = roster(settings, "eu")[0].as_py()
    from atelier.protect.parquet import read_dataset

    products = read_dataset(settings.paths.catalog("products"), None).column("product_id").to_pylist()[:25]
    env = {**os.environ, "ATELIER_HOME": str(home), "ATELIER_ONLINE_STORE": "sqlite", "COLUMNS": "200"}

    bad = subprocess.run([ATELIER, "events", "replay", "-f", str(_file(tmp_path / "bad.jsonl", client, products, bad_row=7)), "-r", "eu"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "row 8, event_type" in bad.stdout + bad.stderr and "nothing was sent" in bad.stdout + bad.stderr
    ctx = RegionContext.of(settings, "eu")
    assert journal.part_names(ctx) == []

    good = _file(tmp_path / "good.jsonl", client, products)
    summaries = []
    for _ in range(2):
        done = subprocess.run([ATELIER, "events", "replay", "-f", str(good), "-r", "eu", "--batch", "10", "--rate", "500"],
                              env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        summaries.append(_summary(done.stdout))
    assert summaries[0][:4] == ["25", "25", "0", "3"]
    assert summaries[1][:4] == ["25", "0", "25", "3"]  # sent again: every event a duplicate, nothing stored twice
    assert journal.read(ctx).num_rows == 25 and len(journal.part_names(ctx)) == 3

    for bad, says in ((["-r", "eu", "--max-rows", "1"], "--max-rows"), (["-r", "mars"], "unknown region 'mars'")):
        refused = subprocess.run([ATELIER, "events", "compact", *bad], env=env, capture_output=True, text=True, timeout=120)
        assert refused.returncode != 0 and says in refused.stdout + refused.stderr, refused.stdout + refused.stderr
    assert len(journal.part_names(ctx)) == 3  # refused: nothing merged
    done = subprocess.run([ATELIER, "events", "compact", "-r", "eu"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _summary(done.stdout)[:4] == ["3", "1", "3", "1"]  # parts before, after, merged, written
    assert journal.read(ctx).num_rows == 25 and len(journal.part_names(ctx)) == 1
    done = subprocess.run([ATELIER, "events", "replay", "-f", str(good), "-r", "eu", "--batch", "10"], env=env, capture_output=True, text=True, timeout=120)
    assert _summary(done.stdout)[:3] == ["25", "0", "25"]  # the ledger still knows every event


def _summary(stdout: str) -> list[str]:
    """The cells of the summary table's one row (sent, accepted, duplicates, batches, ...)."""
    rows = [line for line in stdout.splitlines() if line.startswith("│")]
    assert len(rows) == 1, stdout
    return [cell.strip().replace(",", "") for cell in rows[0].strip("│").split("│")]


def test_replay_paces_to_the_rate():
    sent = []
    events = [Event(event_id=str(i), client_id="c", product_id="p", event_type="view", event_timestamp=datetime(2026, 1, 1, tzinfo=timezone.utc)) for i in range(40)]
    totals = replay.replay(events, lambda chunk: (sent.append(len(chunk)) or (len(chunk), 0)), rate=200, batch=10)
    assert sent == [10, 10, 10, 10] and totals.accepted == 40
    assert 0.14 <= totals.seconds < 1.0  # the 4th batch leaves 30/200 = 0.15 s in
    with pytest.raises(Exception, match="1 to 1000"):
        replay.replay(events, lambda chunk: (0, 0), rate=None, batch=5000)
