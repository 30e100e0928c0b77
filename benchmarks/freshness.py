"""How soon a client's action reaches /recommend, and how fast events go in, beside raw Redis.

    .venv/bin/python benchmarks/freshness.py [--clients 20000] [--products 2000] [--events 1000]

World: --clients clients and --products products (eu), the eu model (one quick epoch: quality is
not measured here), features materialized into a redis-server, served by `bentoml serve` with
2 workers.

* Freshness: for --events clients in turn, a purchase of the product on top of the client's
  recommendations is POSTed to /events; from its 202, /recommend is asked until that product is
  gone. The time from the 202 to that answer, p50 and p99, while 8 other connections keep
  asking /recommend (c=8).
* Ingestion throughput, online plus offline, in events/s: batches of 1,000 events through the
  intake the service uses (atelier.events.ingest: checks, ledger, encrypted journal part with
  fsync, fresh rows in Feast's Redis layout), and over HTTP (POST /events, each body encoded
  beforehand, clients at random but not the full logs' below); beside a raw
  pipelined Redis write of the same fields (HSET of id, product, type and time per event,
  1,000 per pipeline), in the same run. Medians of 15 rounds (one batch takes tens of ms: 5 rounds left one stall able to move the median). Twice: for clients picked at random
  (most with no fresh log yet), and for 1,000 clients whose logs are full (FRESH_LOG events each,
  the steady state of active clients: each batch then moves every client's whole log). For
  those, a raw pipelined write of the rows as the intake left them (every field, HSET under
  another key, with redis-py as the raw write above) too: what moving whole rows costs the raw
  way, read-free.
* Batches of one event each (a till, a page view), sent by 16 threads at once: through the intake,
  which writes the batches that wait for the writer together (atelier.events.group), beside the
  same batches each written alone, in the same run; and over HTTP, POST /events of one event at
  c=1 and c=16 (wrk).
* The ledger as it grows (the journal's index of events by time and id, atelier.events.journal):
  the time to index 1,000 new events while the ledger goes from empty to --ledger-events, for a
  live feed's times (the last 5 s) and for times at random over 30 days (a replay in no order,
  each event on a page of its own, as when the ledger was keyed by the random ids alone), the
  latter with SQLite's defaults too, in the same run. The ingestion rounds above start from an
  empty journal.
* The journal as those rounds left it (a part per batch): read as features and training read
  it, then compacted, then read again.
* The recovery check every batch makes (journaled parts not yet applied online), against a
  journal of --journal-parts parts: the ledger's query, beside listing the parts on disk.
* The client check of a batch of 1,000 ids against a roster of --roster-clients (synthetic ids):
  the intake's `RosterIndex` beside Arrow's `is_in`, which hashes the whole roster per call.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
from common import ROOT, bench_home, log, make_world, mark_ready, parse_wrk, percentiles, save, stop, table

BATCH = 1000
ROUNDS = 15
SQLITE_DEFAULTS = ("PRAGMA cache_size=-2000", "PRAGMA wal_autocheckpoint=1000")
REPLAY_SPREAD_S = 30 * 86_400
SINGLE_THREADS = 16  # senders of one-event batches at once


def _events(clients, products, start=None):
    """One view per client of `clients`, in time order from `start` (5 s ago by default)."""
    from atelier.events.batch import Event

    start = start or datetime.now(timezone.utc) - timedelta(seconds=5)
    return [Event(event_id=uuid.uuid4().hex, client_id=c, product_id=random.choice(products), event_type="view",
                  event_timestamp=start + timedelta(microseconds=i), channel="web") for i, c in enumerate(clients)]


def intake_rounds(ingestor, raw_client, batches) -> tuple[float, float]:
    """(intake, raw Redis) events/s: medians over `batches`, the first one a warm-up."""
    def ingest(batch) -> float:
        t0 = time.perf_counter()
        ingestor.ingest(batch)
        return time.perf_counter() - t0

    return _beside_raw(ingest, raw_client, batches)


def http_rounds(http, raw_client, batches) -> tuple[float, float]:
    """(POST /events, raw Redis) events/s, as `intake_rounds`: each body is encoded to JSON before
    its clock starts (an app's own work, on this machine's two cores beside the service's)."""
    def post(batch) -> float:
        body = json.dumps({"events": [e.model_dump(mode="json", exclude_none=True) for e in batch]}).encode()
        t0 = time.perf_counter()
        r = http.post("/events", content=body, headers={"content-type": "application/json"})
        took = time.perf_counter() - t0
        assert r.status_code == 202, r.text
        return took

    return _beside_raw(post, raw_client, batches)


def _beside_raw(send: Callable[[list], float], raw_client, batches) -> tuple[float, float]:
    """Each batch sent (`send` returns its seconds), then written raw: events/s of both, medians
    over `batches`, the first one a warm-up. Alternating keeps the machine's drift out of the ratio."""
    ours, raw = [], []
    for batch in batches:
        ours.append(send(batch))
        raw.append(raw_redis(raw_client, batch))
    return BATCH / statistics.median(ours[1:]), BATCH / statistics.median(raw[1:])


def singles(ingestor, clients, products, threads: int, seconds: float = 5.0) -> float:
    """Events/s of batches of one event each, sent by `threads` threads at once for `seconds`
    (each thread's batches made beforehand), through `ingestor`."""
    counts = [0] * threads
    rng = random.Random(threads)
    queues = [[_events([c], products) for c in rng.choices(clients, k=4_000)] for _ in range(threads)]

    def send(k: int) -> None:
        for batch in queues[k]:
            if time.perf_counter() >= deadline:
                return
            ingestor.ingest(batch)
            counts[k] += 1

    workers = [threading.Thread(target=send, args=(k,)) for k in range(threads)]
    t0 = time.perf_counter()
    deadline = t0 + seconds
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(counts) / (time.perf_counter() - t0)


def wrk_events(url: str, ids_file: Path, products_file: Path, concurrency: int, seconds: int = 5) -> dict:
    """POST /events with one view per request, at `concurrency` (wrk)."""
    env = {**os.environ, "WRK_IDS": str(ids_file), "WRK_PRODUCTS": str(products_file)}
    out = subprocess.run(["wrk", "-t", str(min(concurrency, 2)), "-c", str(concurrency), "-d", f"{seconds}s", "--latency",
                          "-s", str(ROOT / "benchmarks" / "support" / "events.lua"), f"{url}/events"], capture_output=True, text=True, env=env).stdout
    return parse_wrk(out)


def raw_redis(client, events) -> float:
    """A raw pipelined write of the same fields: one HSET per event, one pipeline per batch; seconds."""
    t0 = time.perf_counter()
    with client.pipeline(transaction=False) as pipe:
        for e in events:
            pipe.hset(f"raw:{e.client_id}".encode(), mapping={b"event_id": e.event_id, b"product_id": e.product_id,
                                                               b"event_type": e.event_type, b"event_time": str(int(e.event_timestamp.timestamp() * 1e6))})
        pipe.execute()
    return time.perf_counter() - t0


def raw_rows(client, keys: list[bytes]) -> float:
    """A raw pipelined write of the rows as the intake left them (every field of each client's hash,
    HSET under another key), 1,000 per pipeline: the floor for full logs, where each batch moves
    the whole rows; events/s, one event per row as in those batches, median of ROUNDS."""
    with client.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.hgetall(key)
        rows = pipe.execute()
    assert all(rows), "a row the intake wrote is missing"
    times = []
    for _ in range(ROUNDS + 1):
        t0 = time.perf_counter()
        with client.pipeline(transaction=False) as pipe:
            for key, row in zip(keys, rows):
                pipe.hset(b"rawrow:" + key, mapping=row)
            pipe.execute()
        times.append(time.perf_counter() - t0)
    return len(keys) / statistics.median(times[1:])


def ledger_growth(settings, events: int, pragmas: tuple[str, ...] = (), spread_s: float = 5.0) -> tuple[float, float]:
    """Median ms to index a batch of 1,000 new events over the first and the last 50 batches, as a
    journal's ledger grows from empty to `events` (a journal of its own, in a temporary home).
    Batch k is sent k seconds after the first, its events' times drawn over the `spread_s`
    seconds before it: 5 s for a live feed, 30 days for a replay in no order."""
    import shutil
    import tempfile

    import pyarrow as pa

    from atelier.context import RegionContext
    from atelier.events.journal import Journal
    from atelier.settings import Settings

    home = Path(tempfile.mkdtemp(dir=settings.home))
    rng = random.Random(3)
    start = int(datetime.now(timezone.utc).timestamp() * 1e6)
    try:
        journal = Journal(RegionContext.of(Settings(home=home), "eu"))
        for pragma in pragmas:
            journal.db.execute(pragma)
        times = []
        for k in range(events // BATCH):
            sent = start + k * 10**6
            batch = pa.table({"event_id": [uuid.uuid4().hex for _ in range(BATCH)],
                              "event_timestamp": pa.array([sent - int(rng.random() * spread_s * 1e6) for _ in range(BATCH)], pa.timestamp("us", "UTC"))})
            t0 = time.perf_counter()
            journal.index(f"{k:020d}", batch)
            times.append(time.perf_counter() - t0)
        journal.close()
        return statistics.median(times[:50]) * 1e3, statistics.median(times[-50:]) * 1e3
    finally:
        shutil.rmtree(home, ignore_errors=True)


def compaction(ingestor) -> tuple[int, float, int, float, float]:
    """(parts, s to read them, parts once compacted, s to compact, s to read them then): the journal
    as the ingestion rounds left it (a part per batch), read as `atelier features compute` and
    training read it (medians of 3), then compacted (`Journal.compact`)."""
    from atelier.events import journal

    ctx = ingestor.ctx

    def read_s() -> float:
        times = []
        for _ in range(3):
            t = time.perf_counter()
            journal.read(ctx)
            times.append(time.perf_counter() - t)
        return statistics.median(times)

    parts, before = len(journal.part_names(ctx)), read_s()
    t = time.perf_counter()
    ingestor.journal.compact()
    took = time.perf_counter() - t
    return parts, before, len(journal.part_names(ctx)), took, read_s()


def recovery_check(settings, parts: int) -> tuple[float, float]:
    """Median ms of a batch's recovery check (`Journal.unapplied`) against a journal of `parts`
    applied parts: the ledger's indexed query, and the disk listed as well (what each batch did
    before the ledger entered parts before writing them; now once per process). The parts are
    empty complete folders, in a journal of its own, in a temporary home."""
    import shutil
    import tempfile

    from atelier.context import RegionContext
    from atelier.events.journal import Journal, parts_dir
    from atelier.protect.parquet import MARKER
    from atelier.settings import Settings

    home = Path(tempfile.mkdtemp(dir=settings.home))
    try:
        journal = Journal(RegionContext.of(Settings(home=home), "eu"))
        folder = parts_dir(journal.ctx)
        names = [f"{k:020d}-bench" for k in range(parts)]
        for name in names:
            (folder / name).mkdir()
            (folder / name / MARKER).write_text("{}")
        journal.db.executemany("INSERT INTO parts (part, applied) VALUES (?, 1)", [(n,) for n in names])

        def median_ms(scan: bool) -> float:
            times = []
            for _ in range(20):
                t = time.perf_counter()
                assert journal.unapplied(scan=scan) == []
                times.append(time.perf_counter() - t)
            return statistics.median(times) * 1e3

        out = median_ms(False), median_ms(True)
        journal.close()
        return out
    finally:
        shutil.rmtree(home, ignore_errors=True)


def roster_check(clients: int) -> tuple[float, float, float]:
    """(is_in ms, index ms, index build s) for a batch of 1,000 ids, 10 of them foreign, against
    a roster of `clients` ids; medians of 20 and the index's answer checked against is_in's."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from atelier.protect.residency import RosterIndex

    held = pa.array([f"C{i:010d}" for i in range(clients)])
    rng = random.Random(3)
    batch = [f"C{rng.randrange(clients):010d}" for _ in range(990)] + [f"X{i}" for i in range(10)]
    t0 = time.perf_counter()
    index = RosterIndex(held)
    build = time.perf_counter() - t0
    arr = pa.array(batch)
    assert index.missing(batch) == [b for b, m in zip(batch, pc.is_in(arr, value_set=held).to_pylist()) if not m]

    def median_ms(f) -> float:
        times = []
        for _ in range(20):
            t = time.perf_counter()
            f()
            times.append(time.perf_counter() - t)
        return statistics.median(times) * 1e3

    return median_ms(lambda: pc.is_in(arr, value_set=held)), median_ms(lambda: index.missing(batch)), build


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=20_000)
    ap.add_argument("--products", type=int, default=2_000)
    ap.add_argument("--events", type=int, default=1_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--ledger-events", type=int, default=300_000)
    ap.add_argument("--roster-clients", type=int, default=1_000_000)
    ap.add_argument("--journal-parts", type=int, default=20_000)
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    spec = {"clients": args.clients, "products": args.products, "events_per_client": 20.0, "chunk_clients": 50_000}
    home, fresh_world = bench_home("freshness", spec)
    from feast.permissions.user import User

    from atelier.context import RegionContext
    from atelier.events.ingest import Ingestor
    from atelier.features import repo
    from atelier.features.definitions import SERVING
    from atelier.local_redis import LocalRedis, free_port
    from atelier.models.recommend.train import train_region
    from atelier.models.recommend.two_tower import TrainConfig
    from atelier.protect.parquet import read_dataset
    from atelier.protect.residency import roster
    from atelier.serving.bento import wait_until_ready
    from atelier.settings import Settings

    s0 = Settings(home=home)
    if fresh_world:
        make_world(s0, spec, ["eu"])
        log("training the eu model")
        train_region(s0, "eu", TrainConfig(epochs=1))
        mark_ready(home, spec)
    import shutil

    shutil.rmtree(home / "stream", ignore_errors=True)  # every run starts with an empty journal
    redis = LocalRedis("atelier-eu", "bench-freshness").start()
    proc = None
    try:
        s = Settings(home=home, online_store="redis", redis={"eu": redis.endpoint()})
        env = {**os.environ, **redis.env("eu"), "ATELIER_HOME": str(home), "ATELIER_ONLINE_STORE": "redis", "BENTOML_HOME": str(s.paths.bentoml_home),
               "ATELIER_REGION": "eu", "ATELIER_WORKERS": str(args.workers)}
        os.environ.update(env)
        repo.apply(s, "eu")
        repo.materialize(s, "eu", incremental=False)
        clients = roster(s, "eu").to_pylist()
        products = read_dataset(s.paths.catalog("products"), None, columns=["product_id"]).column("product_id").to_pylist()

        # ingestion, in process, beside raw Redis
        ingestor = Ingestor(RegionContext.of(s, "eu", User("bench", [SERVING])))
        import gc

        gc.freeze()  # as the service does once started (atelier/bentos/service.py)
        raw_client = redis.client()
        spread = [_events(random.choices(clients, k=BATCH), products) for _ in range(ROUNDS + 1)]  # most with no fresh log yet
        intake_eps, raw_eps = intake_rounds(ingestor, raw_client, spread)
        log(f"intake {intake_eps:,.0f} events/s, raw redis {raw_eps:,.0f} events/s")
        from atelier.features.schemas import FRESH_LOG

        touched = {e.client_id for batch in spread for e in batch}  # their logs hold events from seconds ago
        active = random.Random(2).sample([c for c in clients if c not in touched], BATCH)
        start = datetime.now(timezone.utc) - timedelta(minutes=30)
        batches = [_events(active, products, start + timedelta(seconds=k))  # logs fill one event per batch
                    for k in range(FRESH_LOG + ROUNDS + 1)]
        for batch in batches[:FRESH_LOG]:
            ingestor.ingest(batch)
        full_eps, full_raw_eps = intake_rounds(ingestor, raw_client, batches[FRESH_LOG:])
        import pyarrow as pa

        rows_eps = raw_rows(raw_client, ingestor._redis.keys(pa.array(active, pa.string())).to_pylist())
        log(f"full logs: intake {full_eps:,.0f} events/s, raw redis {full_raw_eps:,.0f} events/s, raw write of the same rows {rows_eps:,.0f} rows/s")
        journal_read = compaction(ingestor)
        log(f"journal read: {journal_read[0]} parts {journal_read[1]:.3f} s, compacted in {journal_read[3]:.2f} s to {journal_read[2]} part(s): {journal_read[4]:.3f} s")
        # Batches of one event, 16 threads at once: grouped (the intake as it is), and each written
        # alone (group_events=1), alternating, same journal and store (after the journal's
        # read above, which measures the rounds before).
        alone = Ingestor(RegionContext.of(s, "eu", User("bench", [SERVING])), group_events=1)
        grouped_eps, alone_eps = [], []
        for _ in range(2):
            grouped_eps.append(singles(ingestor, clients, products, SINGLE_THREADS))
            alone_eps.append(singles(alone, clients, products, SINGLE_THREADS))
        single_eps = singles(ingestor, clients, products, 1)
        grouped_eps, alone_eps = statistics.median(grouped_eps), statistics.median(alone_eps)
        alone.close()
        log(f"single events, {SINGLE_THREADS} threads: grouped {grouped_eps:,.0f} events/s, each alone {alone_eps:,.0f}; one thread {single_eps:,.0f}")
        ledger = ledger_growth(s, args.ledger_events)
        ledger_replay = ledger_growth(s, args.ledger_events, spread_s=REPLAY_SPREAD_S)
        ledger_defaults = ledger_growth(s, args.ledger_events, SQLITE_DEFAULTS, spread_s=REPLAY_SPREAD_S)
        log(f"ledger {ledger[0]:.1f} -> {ledger[1]:.1f} ms per 1,000 events; times at random {ledger_replay[0]:.1f} -> {ledger_replay[1]:.1f} ms, "
            f"with SQLite's defaults {ledger_defaults[0]:.1f} -> {ledger_defaults[1]:.1f} ms")
        recovery = recovery_check(s, args.journal_parts)
        log(f"recovery check at {args.journal_parts:,} parts: ledger {recovery[0]:.2f} ms, listing the disk {recovery[1]:.2f} ms")
        is_in_ms, index_ms, index_s = roster_check(args.roster_clients)
        log(f"client check at {args.roster_clients:,} clients: is_in {is_in_ms:.2f} ms, index {index_ms:.2f} ms")

        # the service
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log_file = home / "service.log"
        proc = subprocess.Popen([str(Path(sys.executable).with_name("bentoml")), "serve", "atelier.bentos.service:Recommender", "--port", str(port), "--host", "127.0.0.1"],
                                cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT), "ATELIER_INSECURE_LOCAL": "1"}, stdout=open(log_file, "w"), stderr=subprocess.STDOUT)
        wait_until_ready(url, proc, log=log_file)
        http = httpx.Client(base_url=url, timeout=30)
        known = [c for c in random.Random(1).sample(clients, min(len(clients), 6 * args.events)) if not http.post("/recommend", json={"client_id": c, "k": 10}).json()["fallback"]]
        log(f"{len(known):,} clients with personal answers")

        # Clients at random as in process, the full logs' clients left out: their rows are what
        # the full-log rounds measure, and one batch in eight would carry ~1,000 of them.
        full = set(active)
        others = [c for c in clients if c not in full]
        http_eps, http_raw_eps = http_rounds(http, raw_client, [_events(random.choices(others, k=BATCH), products) for _ in range(ROUNDS + 1)])
        log(f"over HTTP: {http_eps:,.0f} events/s, raw redis {http_raw_eps:,.0f} events/s")

        ids_file, products_file = home / "wrk_clients.txt", home / "wrk_products.txt"
        ids_file.write_text("\n".join(others) + "\n")
        products_file.write_text("\n".join(products) + "\n")
        posts = {c: wrk_events(url, ids_file, products_file, c) for c in (1, SINGLE_THREADS)}
        assert all(p["errors"] == 0 and p["socket_errors"] == 0 for p in posts.values()), posts
        log(f"POST /events, one event each: c=1 {posts[1]['rps']:,.0f}/s, c={SINGLE_THREADS} {posts[SINGLE_THREADS]['rps']:,.0f}/s")

        halt = threading.Event()
        load_counts = [0] * 8

        def load(i: int) -> None:
            with httpx.Client(base_url=url, timeout=30) as c:
                rng = random.Random(100 + i)
                while not halt.is_set():
                    c.post("/recommend", json={"client_id": rng.choice(known), "k": 10})
                    load_counts[i] += 1

        threads = [threading.Thread(target=load, args=(i,), daemon=True) for i in range(8)]
        for t in threads:
            t.start()
        fresh_s, asks, t_load = [], [], time.perf_counter()
        for c in known[: args.events]:
            top = http.post("/recommend", json={"client_id": c, "k": 10}).json()["items"][0]["product_id"]
            r = http.post("/events", json={"events": [{"event_id": uuid.uuid4().hex, "client_id": c, "product_id": top, "event_type": "purchase",
                                                         "event_timestamp": datetime.now(timezone.utc).isoformat()}]})
            acked = time.perf_counter()
            assert r.status_code == 202 and r.json()["accepted"] == 1, r.text
            n = 0
            while True:
                n += 1
                items = http.post("/recommend", json={"client_id": c, "k": 10}).json()["items"]
                if top not in {i["product_id"] for i in items}:
                    break
                if time.perf_counter() - acked > 10:
                    raise SystemExit(f"client {c}: product {top} still recommended 10 s after its purchase")
            fresh_s.append(time.perf_counter() - acked)
            asks.append(n)
        load_rps = sum(load_counts) / (time.perf_counter() - t_load)
        halt.set()
        for t in threads:
            t.join()
        f = percentiles(fresh_s)
        rows = [
            ["freshness: 202 to /recommend without the product, p50", f"{f['p50_ms']:.2f} ms", f"{len(fresh_s):,} purchases, /recommend at c=8 ({load_rps:,.0f} requests/s) meanwhile"],
            ["freshness p99", f"{f['p99_ms']:.2f} ms", f"answers needed: {max(asks)} at most ({sum(a > 1 for a in asks)} needed more than one)"],
            ["ingestion, in process (online + journal)", f"{intake_eps:,.0f} events/s", f"batches of {BATCH:,}, median of {ROUNDS}"],
            ["raw pipelined Redis write, same fields", f"{raw_eps:,.0f} events/s", "HSET per event, one pipeline per batch"],
            ["ingestion / raw", f"{intake_eps / raw_eps:.2f}x in process", ""],
            ["ingestion over HTTP (POST /events)", f"{http_eps:,.0f} events/s", f"batches of {BATCH:,} encoded beforehand, clients at random (not the full logs'), median of {ROUNDS}"],
            ["over HTTP / raw", f"{http_eps / http_raw_eps:.2f}x", f"raw {http_raw_eps:,.0f} events/s in the same rounds"],
            [f"batches of one event, {SINGLE_THREADS} threads at once, in process", f"{grouped_eps:,.0f} events/s",
             f"{grouped_eps / alone_eps:.2f}x each batch written alone ({alone_eps:,.0f} events/s, same run); one thread {single_eps:,.0f}"],
            [f"POST /events of one event, c={SINGLE_THREADS}", f"{posts[SINGLE_THREADS]['rps']:,.0f} events/s",
             f"wrk, 5 s; p50 {posts[SINGLE_THREADS]['p50_ms']:.1f} ms, p99 {posts[SINGLE_THREADS]['p99_ms']:.1f} ms; c=1 {posts[1]['rps']:,.0f} events/s, p50 {posts[1]['p50_ms']:.1f} ms"],
            [f"ingestion, clients with full logs ({FRESH_LOG} events)", f"{full_eps:,.0f} events/s", f"1,000 clients, one event each per batch; raw {full_raw_eps:,.0f} events/s"],
            ["full logs / raw", f"{full_eps / full_raw_eps:.2f}x in process", "each batch reads and writes every client's whole log"],
            ["raw pipelined write of those rows as stored", f"{rows_eps:,.0f} rows/s", f"HSET of every field with redis-py, 1,000 per pipeline: full logs are {full_eps / rows_eps:.2f}x this"],
            ["ledger: 1,000 new events, empty -> full", f"{ledger[0]:.1f} -> {ledger[1]:.1f} ms", f"first and last 50 batches, to {args.ledger_events:,} events; a live feed's times (the last 5 s)"],
            ["the same, times at random over 30 days", f"{ledger_replay[0]:.1f} -> {ledger_replay[1]:.1f} ms", "a replay in no order: a page per event, as keyed by id alone"],
            ["the same (times at random) with SQLite's defaults", f"{ledger_defaults[0]:.1f} -> {ledger_defaults[1]:.1f} ms", "2 MB cache, a checkpoint every 1,000 WAL pages"],
            [f"journal read (features, training): {journal_read[0]} parts", f"{journal_read[1] * 1e3:,.0f} ms", "a part per batch of the rounds above"],
            [f"the same compacted to {journal_read[2]} part(s)", f"{journal_read[4] * 1e3:,.0f} ms", f"`atelier events compact` (run by `features compute`): {journal_read[3]:.2f} s"],
            ["recovery check per batch: the ledger's unapplied parts", f"{recovery[0]:.2f} ms", f"a journal of {args.journal_parts:,} parts (an indexed query)"],
            ["the same listing the parts on disk", f"{recovery[1]:.2f} ms", "what each batch did before; now once per process"],
            ["client check, 1,000 ids: roster index", f"{index_ms:.2f} ms", f"{args.roster_clients:,} clients; built in {index_s:.2f} s, once per lake"],
            ["the same with Arrow's is_in", f"{is_in_ms:.2f} ms", "hashes the whole roster on every call"],
        ]
        goals = [["freshness p99 <= 100 ms", f"{f['p99_ms']:.2f} ms", "yes" if f["p99_ms"] <= 100 else "NO"],
                 ["ingestion >= 0.5x raw Redis, clients at random", f"{intake_eps / raw_eps:.2f}x", "yes" if intake_eps / raw_eps >= 0.5 else "NO"],
                 [f"the same, every client's log full ({FRESH_LOG} events)", f"{full_eps / full_raw_eps:.2f}x", "yes" if full_eps / full_raw_eps >= 0.5 else "NO"],
                 ["full logs >= 0.5x a raw write of the same rows (the fields the intake writes)", f"{full_eps / rows_eps:.2f}x", "yes" if full_eps / rows_eps >= 0.5 else "NO"]]
        t1 = table(f"Real-time events, {args.clients:,} clients, {args.products:,} products, {args.workers} workers", ["what", "measured", "how"], rows)
        t2 = table("Goals", ["goal", "measured", "met"], goals)
        save("freshness", {"freshness": f, "asks": asks, "intake_eps": intake_eps, "http_eps": http_eps, "http_raw_eps": http_raw_eps, "raw_eps": raw_eps, "full_logs_eps": full_eps, "full_logs_raw_eps": full_raw_eps, "full_logs_raw_rows_eps": rows_eps, "load_rps": load_rps, "singles": {"grouped_eps": grouped_eps, "alone_eps": alone_eps, "one_thread_eps": single_eps, "http": posts}, "ledger_ms": ledger, "ledger_replay_ms": ledger_replay, "ledger_defaults_ms": ledger_defaults, "recovery_ms": recovery, "journal_read": journal_read, "roster_check_ms": {"is_in": is_in_ms, "index": index_ms}, "tables": [t1, t2]})
    finally:
        stop([proc])
        redis.stop()


if __name__ == "__main__":
    main()
