"""Shared helpers for the benchmark scripts: worlds cached by spec, timing, result tables.

Every figure is printed beside a baseline measured in the same run, as medians (and ratios),
because the machine is shared and noisy. Results are also written as JSON under
benchmarks/results/ for the README.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def bench_home(name: str, spec: dict) -> tuple[Path, bool]:
    """A data home for a benchmark world; reused while the spec is unchanged. Returns (home, fresh)."""
    base = Path(os.environ.get("ATELIER_BENCH_HOME", "/tmp/atelier-bench"))
    home = base / name
    stamp = home / "spec.json"
    fresh = not stamp.exists() or json.loads(stamp.read_text()) != spec
    if fresh:
        import shutil

        shutil.rmtree(home, ignore_errors=True)
        home.mkdir(parents=True)
    os.environ["ATELIER_HOME"] = str(home)
    return home, fresh


def make_world(settings, spec: dict, regions: list[str], *, apply: bool = True) -> None:
    """Keys for every region, the generated world, and the features of `regions` (applied to their
    Feast projects unless `apply` is false): what each benchmark's world starts from."""
    from atelier.data.generate import generate_world
    from atelier.data.world import WorldSpec
    from atelier.features import repo
    from atelier.features.pipeline import compute_features
    from atelier.protect.keys import LocalKeyStore
    from atelier.regions import region_codes

    for r in region_codes():
        LocalKeyStore.init(settings.paths.keys, r)
    log(f"generating {spec['clients']:,} clients and {spec['products']:,} products")
    generate_world(settings, WorldSpec(**spec))
    for r in regions:
        log(f"computing features for {r}")
        compute_features(settings, r)
        if apply:
            repo.apply(settings, r)


def stop(procs, grace_s: float = 20) -> None:
    """Stop server processes: SIGTERM to all, then SIGKILL to any still there after `grace_s`."""
    import subprocess

    procs = [p for p in procs if p is not None]
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(grace_s)
        except subprocess.TimeoutExpired:
            p.kill()


def mark_ready(home: Path, spec: dict) -> None:
    (home / "spec.json").write_text(json.dumps(spec))


def percentiles(samples_s: list[float]) -> dict[str, float]:
    ms = sorted(x * 1e3 for x in samples_s)
    pick = lambda q: ms[min(len(ms) - 1, int(q * len(ms)))]
    return {"p50_ms": statistics.median(ms), "p99_ms": pick(0.99), "n": len(ms)}


class Timer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0


def table(title: str, header: list[str], rows: list[list]) -> str:
    cells = [header] + [[f"{c:,.2f}" if isinstance(c, float) else f"{c:,}" if isinstance(c, int) else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"
    out = [f"\n{title}", line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in cells[1:]]
    text = "\n".join(out)
    print(text, flush=True)
    return text


def save(name: str, payload: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "when": time.strftime("%Y-%m-%dT%H:%M:%S"), "python": sys.version.split()[0], **payload}
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=2, default=str))


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def parse_wrk(out: str) -> dict:
    """wrk's --latency report: p50/p99 (ms), requests/s, requests, non-2xx answers and socket errors."""
    import re

    def ms(label):
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)", out, re.M)
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {"p50_ms": ms("50"), "p99_ms": ms("99"), "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "requests": int(re.search(r"(\d+) requests in", out).group(1)),
            "errors": int(errors.group(1)) if errors else 0, "socket_errors": sum(map(int, socket.groups())) if socket else 0}
