"""/recommend under load (wrk), beside the in-process floor and an empty endpoint, same run.

    .venv/bin/python benchmarks/serving.py [--products 100000] [--duration 15]

World: --products products (default 100k), 30k clients; the eu model (one quick epoch: quality
is not measured here) exported with its HNSW index; features materialized into a redis-server.
Served by `bentoml serve` with 2 workers. For concurrency 1, 8 and 32, wrk reports p50/p99 and
requests/s of:
  * /recommend of the regional service (random known clients, k=10);
  * an empty endpoint on the same service configuration (benchmarks/support/empty_service.py).
The in-process floor is one request's work without HTTP: feature read + tower + top-k.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
from common import ROOT, Timer, bench_home, log, make_world, mark_ready, parse_wrk, percentiles, save, stop, table

CONCURRENCY = (1, 8, 32)


def wrk(url: str, ids_file: Path, concurrency: int, seconds: int) -> dict:
    threads = min(2, concurrency)
    env = {**os.environ, "WRK_IDS": str(ids_file)}
    out = subprocess.run(["wrk", "-t", str(threads), "-c", str(concurrency), "-d", f"{seconds}s", "--latency", "-s", str(ROOT / "benchmarks" / "support" / "post.lua"), f"{url}/recommend"], capture_output=True, text=True, env=env).stdout
    return parse_wrk(out)


def _model_of_this_code(settings) -> bool:
    """Whether the world's eu model was exported by the code being measured (the world is reused)."""
    import bentoml

    from atelier.models.store import code_version
    from atelier.serving.bento import latest_model

    try:
        return bentoml.models.get(latest_model(settings, "eu")).info.metadata.get("code_version") == code_version()
    except Exception:  # no model yet
        return False


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--products", type=int, default=100_000)
    ap.add_argument("--clients", type=int, default=30_000)
    ap.add_argument("--duration", type=int, default=15)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (make bench installs it: apt-get install wrk)")

    spec = {"clients": args.clients, "products": args.products, "events_per_client": 12.0, "chunk_clients": 50_000}
    home, fresh = bench_home("serving", spec)
    from atelier.features import repo
    from atelier.local_redis import LocalRedis, free_port
    from atelier.models.recommend.train import train_region
    from atelier.models.recommend.two_tower import TrainConfig
    from atelier.serving.bento import latest_model, wait_until_ready
    from atelier.serving.recommender import Query
    from atelier.serving.runtime import serving_context, start
    from atelier.settings import Settings

    s0 = Settings(home=home)
    if fresh:
        make_world(s0, spec, ["eu"])
        mark_ready(home, spec)
    shutil.rmtree(home / "stream", ignore_errors=True)  # events posted to an earlier run: the world is the generator's
    if fresh or not _model_of_this_code(s0):
        log("training the eu model and building its index")
        train_region(s0, "eu", TrainConfig(epochs=3, serve="ranked"))  # the heavier path: retrieval, ranking, filters

    redis = LocalRedis("atelier-eu", "bench-serving").start()
    procs = []
    try:
        s = Settings(home=home, online_store="redis", redis={"eu": redis.endpoint()})
        env = {**os.environ, **redis.env("eu"), "ATELIER_HOME": str(home), "ATELIER_ONLINE_STORE": "redis", "BENTOML_HOME": str(s.paths.bentoml_home),
               "ATELIER_REGION": "eu", "ATELIER_WORKERS": str(args.workers)}
        os.environ.update(env)
        repo.apply(s, "eu")
        repo.materialize(s, "eu", incremental=False, views=["client_profile", "client_attributes", "client_activity", "product_popularity"])

        # the in-process floor
        from atelier.models.store import use_bentoml_home

        use_bentoml_home(s)
        import bentoml

        tag = latest_model(s, "eu")
        engine = start(serving_context(s, "eu"), Path(bentoml.models.get(tag).path), tag)
        clients = [c for c in (f"EU{i:08d}" for i in range(args.clients)) if engine.features.get_one(c) is not None][:2000]
        ids_file = home / "ids.txt"
        ids_file.write_text("\n".join(clients) + "\n")
        samples = []
        for c in random.Random(0).choices(clients, k=1500):
            with Timer() as t:
                engine.recommend([Query(c, 10)])
            samples.append(t.seconds)
        floor = percentiles(samples[200:])
        log(f"in-process floor p50 {floor['p50_ms']:.2f} ms")

        # the two servers
        bentoml_cli = str(Path(sys.executable).with_name("bentoml"))
        urls = {}
        for name, target, cwd in (("recommend", "atelier.bentos.service:Recommender", ROOT), ("empty", "empty_service:Empty", ROOT / "benchmarks" / "support")):
            port = free_port()
            log_file = home / f"{name}.log"
            # loopback only and without tokens, as `atelier serve --insecure-local` (wrk sends none)
            proc = subprocess.Popen([bentoml_cli, "serve", target, "--port", str(port), "--host", "127.0.0.1"], cwd=cwd,
                                    env={**env, "PYTHONPATH": str(ROOT), "ATELIER_INSECURE_LOCAL": "1"}, stdout=open(log_file, "w"), stderr=subprocess.STDOUT)
            procs.append(proc)
            urls[name] = f"http://127.0.0.1:{port}"
            wait_until_ready(urls[name], proc, log=log_file)
        for name, url in urls.items():  # warm up: the dispatcher learns its timing, TF traces
            for c in clients[:300]:
                httpx.post(f"{url}/recommend", json={"client_id": c, "k": 10}, timeout=30)
        results = {}
        for c in CONCURRENCY:
            for name, url in urls.items():
                results[(name, c)] = wrk(url, ids_file, c, args.duration)
                log(f"{name} c={c}: {results[(name, c)]}")
        rows, goals = [], []
        for c in CONCURRENCY:
            r, e = results[("recommend", c)], results[("empty", c)]
            rows.append([c, "/recommend", r["p50_ms"], r["p99_ms"], round(r["rps"]), r["errors"] + r["socket_errors"]])
            rows.append([c, "empty endpoint", e["p50_ms"], e["p99_ms"], round(e["rps"]), e["errors"] + e["socket_errors"]])
            goals.append([f"c={c}: p99 <= 2x empty p99", f"{r['p99_ms']:.2f} vs {2 * e['p99_ms']:.2f} ms", "yes" if r["p99_ms"] <= 2 * e["p99_ms"] else "NO"])
        r1, e1 = results[("recommend", 1)], results[("empty", 1)]
        goals.insert(0, ["c=1: p50 <= empty p50 + floor + 1 ms", f"{r1['p50_ms']:.2f} vs {e1['p50_ms'] + floor['p50_ms'] + 1:.2f} ms", "yes" if r1["p50_ms"] <= e1["p50_ms"] + floor["p50_ms"] + 1 else "NO"])
        goals.insert(0, ["in-process floor p50 <= 3 ms", f"{floor['p50_ms']:.2f} ms", "yes" if floor["p50_ms"] <= 3 else "NO"])
        r32, e32 = results[("recommend", 32)], results[("empty", 32)]
        goals.insert(0, ["c=32: requests/s >= half the empty endpoint's, no errors", f"{r32['rps']:.0f} vs {e32['rps'] / 2:.0f}", "yes" if r32["rps"] >= e32["rps"] / 2 and not r32["errors"] else "NO"])
        t1 = table(f"/recommend with {args.products:,} products, {args.workers} workers, wrk {args.duration}s per point (in-process floor: p50 {floor['p50_ms']:.2f} ms, p99 {floor['p99_ms']:.2f} ms)",
                   ["concurrency", "endpoint", "p50 ms", "p99 ms", "requests/s", "errors"], rows)
        t2 = table("Goals", ["goal", "measured", "met"], goals)
        save("serving", {"products": args.products, "floor": floor, "results": {f"{k[0]}@{k[1]}": v for k, v in results.items()}, "tables": [t1, t2]})
    finally:
        stop(procs)
        redis.stop()


if __name__ == "__main__":
    main()
