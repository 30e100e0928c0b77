"""`atelier events replay`: a file of events pushed at a chosen rate, through the same checks as POST /events.

For demos and load tests. Every row is checked field by field first (the `Event` model of the
service), and a file with a bad row sends nothing. Batches then go either straight into the
region's stores (an `Ingestor`, as the service does) or, with a service URL, over HTTP to
POST /events; each batch is checked again there (products, clients, times) and a refused
batch stops the replay with the service's reasons.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
from pydantic import ValidationError

from atelier.errors import AtelierError
from atelier.events.batch import MAX_BATCH, Event, Problems


@dataclass
class Totals:
    sent: int = 0
    accepted: int = 0
    duplicates: int = 0
    batches: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)


def read_events(path: Path) -> list[Event]:
    """The file's rows as events (CSV, Parquet or JSON Lines); every bad row listed, none sent."""
    from atelier.data.importer import read_table

    path = Path(path)
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        if not path.exists():
            raise AtelierError("file not found", where=str(path))
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    else:
        table: pa.Table = read_table(path)
        rows = table.to_pylist()
    known = set(Event.model_fields)
    events, problems = [], []
    for i, row in enumerate(rows, start=1):
        row = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items() if k in known and v is not None}
        try:
            events.append(Event.model_validate(row))
        except ValidationError as e:
            problems += [{"loc": ["row", i, ".".join(map(str, err["loc"])) or "row"], "msg": err["msg"], "type": err["type"]} for err in e.errors()]
    if problems:
        raise AtelierError(f"{len(problems)} problem(s) in the file; nothing was sent", where=str(path),
                           details=[f"row {p['loc'][1]}, {p['loc'][2]}: {p['msg']}" for p in problems[:20]],
                           fix="correct those rows (columns: " + ", ".join(Event.model_fields) + ")")
    if not events:
        raise AtelierError("the file holds no events", where=str(path))
    return events


def batches(events: list[Event], size: int) -> Iterator[list[Event]]:
    for start in range(0, len(events), size):
        yield events[start : start + size]


def replay(events: list[Event], send: Callable[[list[Event]], tuple[int, int]], *, rate: float | None, batch: int = 100,
           progress: Callable[[int], None] = lambda n: None) -> Totals:
    """Send `events` in batches of `batch`, at most `rate` events a second (None: as fast as they go)."""
    if not 1 <= batch <= MAX_BATCH:
        raise AtelierError(f"a batch holds 1 to {MAX_BATCH} events, not {batch}", fix="choose another --batch")
    if rate is not None and rate <= 0:
        raise AtelierError(f"--rate must be positive, not {rate}")
    totals = Totals()
    t0 = time.perf_counter()
    for chunk in batches(events, batch):
        if rate is not None:  # pace: the n-th event leaves no earlier than n / rate seconds in
            wait = t0 + totals.sent / rate - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
        t = time.perf_counter()
        accepted, duplicates = send(chunk)
        totals.latencies_ms.append((time.perf_counter() - t) * 1e3)
        totals.sent += len(chunk)
        totals.accepted += accepted
        totals.duplicates += duplicates
        totals.batches += 1
        progress(len(chunk))
    totals.seconds = time.perf_counter() - t0
    return totals


def direct(ingestor) -> Callable[[list[Event]], tuple[int, int]]:
    """Send into the region's stores in this process."""
    def send(chunk: list[Event]) -> tuple[int, int]:
        receipt = ingestor.ingest(chunk)
        return receipt.accepted, receipt.duplicates

    return send


def over_http(url: str, token: str | None, timeout: float = 30.0) -> Callable[[list[Event]], tuple[int, int]]:
    """Send to a regional service's POST /events; waits out a 503's Retry-After (up to 5 tries)."""
    import httpx

    client = httpx.Client(base_url=url.rstrip("/"), timeout=timeout, headers={"authorization": f"Bearer {token}"} if token else {})

    def send(chunk: list[Event]) -> tuple[int, int]:
        body = {"events": [e.model_dump(mode="json", exclude_none=True) for e in chunk]}
        for _attempt in range(5):
            try:
                r = client.post("/events", json=body)
            except httpx.HTTPError as e:
                raise AtelierError(f"the service did not answer: {e}", where=url, fix="start it (`atelier serve`) or check --url") from None
            if r.status_code == 503:
                time.sleep(float(r.headers.get("retry-after", "5")))
                continue
            if r.status_code == 202:
                return r.json()["accepted"], r.json()["duplicates"]
            detail = r.json() if r.headers.get("content-type", "").startswith("application/json") else {"error": r.text}
            if r.status_code == 400 and detail.get("detail"):
                raise Problems(detail["detail"])
            raise AtelierError(f"the service refused a batch ({r.status_code} {detail.get('code', '')}): {detail.get('error')}", where=url)
        raise AtelierError("the region's online store stayed unreachable (503 five times)", where=url, fix="check the region's Redis, then replay again: events sent are counted once")

    return send
