"""Soak: ten minutes at c=32 of mixed /recommend and /similar; errors, memory and latency drift.

    .venv/bin/python benchmarks/soak.py [--minutes 10] [--products 5000] [--clients 20000]

The eu service (its ranking stage, 2 workers, bearer tokens on, as in production) answers wrk at
concurrency 32, 80% /recommend and 20% /similar over known clients and products, in one-minute
slices back to back. After each minute: each worker's resident memory (from /proc) and that
minute's p50/p99. Goals: 0 errors; each worker's RSS grows by at most 5% from the end of the first
minute (warm) to the end of the last; p99 drifts by at most 1.5x from the first minute to the last.
The first minute is the baseline, measured in the same run.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
from common import ROOT, bench_home, log, make_world, mark_ready, parse_wrk, save, stop, table

TOKEN = "soak-benchmark-token"


def wrk_minute(url: str, env: dict, seconds: int) -> dict:
    out = subprocess.run(["wrk", "-t", "2", "-c", "32", "-d", f"{seconds}s", "--latency", "--timeout", "10s",
                          "-s", str(ROOT / "benchmarks" / "support" / "mixed.lua"), url], capture_output=True, text=True, env=env).stdout
    r = parse_wrk(out)
    r["errors"] += r.pop("socket_errors")
    return r


def worker_rss(server_pid: int) -> dict[int, int]:
    """Resident memory (bytes) of every process under `bentoml serve` that runs a worker."""
    out = {}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
            cmdline = (status.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        ppid = int(re.search(r"^PPid:\s+(\d+)", text, re.M).group(1))
        rss = re.search(r"^VmRSS:\s+(\d+) kB", text, re.M)
        if rss and "_bentoml_impl.worker" in cmdline and _descends(ppid, server_pid):
            out[int(status.parent.name)] = int(rss.group(1)) * 1024
    return out


def _descends(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        try:
            pid = int(re.search(r"^PPid:\s+(\d+)", Path(f"/proc/{pid}/status").read_text(), re.M).group(1))
        except OSError:
            return False
    return False


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=int, default=10)
    ap.add_argument("--products", type=int, default=5_000)
    ap.add_argument("--clients", type=int, default=20_000)
    ap.add_argument("--slice", type=int, default=60, help="seconds per measured slice")
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (make bench installs it: apt-get install wrk)")

    spec = {"clients": args.clients, "products": args.products, "events_per_client": 12.0, "chunk_clients": 50_000}
    home, fresh = bench_home("soak", spec)
    from atelier.features import repo
    from atelier.local_redis import LocalRedis, free_port
    from atelier.models.recommend.train import train_region
    from atelier.models.recommend.two_tower import TrainConfig
    from atelier.protect.residency import roster
    from atelier.serving.bento import wait_until_ready
    from atelier.settings import Settings

    s0 = Settings(home=home)
    if fresh:
        make_world(s0, spec, ["eu"])
        log("training the eu model (its ranking stage serves)")
        train_region(s0, "eu", TrainConfig(epochs=2, serve="ranked"))
        mark_ready(home, spec)

    redis = LocalRedis("atelier-eu", "bench-soak").start()
    proc = None
    try:
        s = Settings(home=home, online_store="redis", redis={"eu": redis.endpoint()})
        env = {**os.environ, **redis.env("eu"), "ATELIER_HOME": str(home), "ATELIER_ONLINE_STORE": "redis", "BENTOML_HOME": str(s.paths.bentoml_home),
               "ATELIER_REGION": "eu", "ATELIER_WORKERS": "2", "ATELIER_API_TOKENS": f'{{"soak": "{TOKEN}"}}'}
        os.environ.update(env)
        repo.apply(s, "eu")
        repo.materialize(s, "eu", incremental=False)
        clients = roster(s, "eu").to_pylist()[:5000]
        (home / "ids.txt").write_text("\n".join(clients) + "\n")
        from atelier.protect.parquet import read_dataset

        products = read_dataset(s.paths.catalog("products"), None, columns=["product_id"]).column("product_id").to_pylist()[:5000]
        (home / "products.txt").write_text("\n".join(products) + "\n")

        port = free_port()
        log_file = home / "soak.log"
        proc = subprocess.Popen([str(Path(sys.executable).with_name("bentoml")), "serve", "atelier.bentos.service:Recommender", "--port", str(port), "--host", "127.0.0.1"],
                                cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)}, stdout=open(log_file, "w"), stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        wait_until_ready(url, proc, log=log_file)
        auth = {"authorization": f"Bearer {TOKEN}"}
        for c in clients[:200]:  # warm up: TensorFlow traces, the dispatcher learns its timing
            httpx.post(f"{url}/recommend", json={"client_id": c, "k": 10}, headers=auth, timeout=30)
        wrk_env = {**os.environ, "WRK_IDS": str(home / "ids.txt"), "WRK_PRODUCTS": str(home / "products.txt"), "WRK_TOKEN": TOKEN}
        minutes = []
        for m in range(args.minutes):
            r = wrk_minute(url, wrk_env, args.slice)
            r["rss"] = worker_rss(proc.pid)
            minutes.append(r)
            log(f"minute {m + 1}: p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, {r['rps']:.0f}/s, {r['errors']} errors, RSS {[f'{v / 2**20:.0f} MiB' for v in r['rss'].values()]}")
        first, last = minutes[0], minutes[-1]
        workers = sorted(set(first["rss"]) & set(last["rss"]))
        growth = {w: last["rss"][w] / first["rss"][w] for w in workers}
        errors = sum(m["errors"] for m in minutes)
        drift = last["p99_ms"] / first["p99_ms"]
        rows = [[i + 1, f"{m['p50_ms']:.2f}", f"{m['p99_ms']:.2f}", f"{m['rps']:,.0f}", m["errors"], " / ".join(f"{v / 2**20:,.0f}" for _, v in sorted(m["rss"].items()))]
                for i, m in enumerate(minutes)]
        t1 = table(f"Soak: {args.minutes} x {args.slice}s at c=32, 80% /recommend + 20% /similar, {args.products:,} products, 2 workers, tokens on",
                   ["minute", "p50 ms", "p99 ms", "requests/s", "errors", "worker RSS MiB"], rows)
        worst = max(growth.values()) if growth else float("nan")
        t2 = table("Goals (issue 13): the last minute against the first, same run", ["goal", "measured", "met"], [
            ["0 errors", f"{errors} in {sum(m['requests'] for m in minutes):,} requests", "yes" if errors == 0 else "NO"],
            ["each worker's RSS grows <= 5%", ", ".join(f"{(g - 1) * 100:+.1f}%" for g in growth.values()) or "no worker seen", "yes" if growth and worst <= 1.05 else "NO"],
            ["p99 drift <= 1.5x", f"{last['p99_ms']:.2f} vs {first['p99_ms']:.2f} ms ({drift:.2f}x)", "yes" if drift <= 1.5 else "NO"],
        ])
        save("soak", {"minutes": minutes, "growth": growth, "errors": errors, "drift": drift, "tables": [t1, t2]})
    finally:
        stop([proc], grace_s=30)
        redis.stop()


if __name__ == "__main__":
    main()
