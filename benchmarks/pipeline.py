"""The feature pipeline's aggregations on two engines: the pandas/numpy path and the SQL on DuckDB.

    .venv/bin/python benchmarks/pipeline.py [--clients 100000] [--events-per-client 40] [--region eu|all]

World: --clients clients over the three regions (generated; reused while the spec holds); the
large world of issue 12 is `--clients 1000000 --events-per-client 50 --region all` (50M events).
Then, each path in its own process (so that its peak RSS is its own), the same feature tables,
whole, as Feast reads them:
* client_activity (windows, favourites, last purchase, product histories), one
  maison_engagement per maison, product_popularity;
* the weekly sales and clientele tables per country and store.

Each path is one of `atelier features compute`'s engines, without its encryption and writing:
`--engine local` (atelier.features.pipeline.NumpyEngine, pandas/numpy) and `--engine duckdb`
(atelier.features.compute_duckdb, atelier.features.sql's BigQuery-dialect queries transpiled by
sqlglot, over the same decrypted Arrow tables in memory, the maisons' tables cut from one staging
table of every maison's windows as BigQuery does). Both go through a region's events a
client-complete part of the lake at a time, so that memory follows the largest part rather than
the region. Decryption is not timed: each part is read before its clock starts.
Each path runs --rounds times; the median is reported. The full `atelier features compute` of
the region (decryption, encryption and writing included) is timed once beside them, for scale.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing as mp
import resource
import statistics
import time

from common import bench_home, log, make_world, mark_ready, save, table


def _inputs(home: str, region: str):
    """An iterator over the region's events' client-complete parts, decrypted; its clients, the
    catalog, and the events' schema."""
    from atelier.protect.keys import LocalKeyStore
    from atelier.protect.parquet import open_dataset, read_dataset
    from atelier.settings import Settings

    s = Settings(home=home)
    keys = LocalKeyStore(s.paths.keys, region)
    events = open_dataset(s.paths.client_table("events", region), keys)
    clients = read_dataset(s.paths.client_table("clients", region), keys, columns=["client_id", "country"])
    products = read_dataset(s.paths.catalog("products"), None, columns=["product_id", "maison", "category"])
    return (fragment.to_table(schema=events.schema) for fragment in events.get_fragments()), clients, products, events.schema


class _Clock:
    """Time spent computing, the parts' decryption left out."""

    def __init__(self, parts):
        self.parts, self.seconds, self.events = parts, 0.0, 0

    def __iter__(self):
        for part in self.parts:
            self.events += part.num_rows
            t = time.perf_counter()
            yield part
            self.seconds += time.perf_counter() - t

    def timed(self, fn, *args):
        t = time.perf_counter()
        out = fn(*args)
        self.seconds += time.perf_counter() - t
        return out


def _tables(engine, clock: _Clock) -> int:
    """Every feature table by one of `atelier features compute`'s engines, part by part: the rows
    computed (what it would write, encrypted, is left out)."""
    rows = 0
    for part in clock:
        activity, engagement = engine.part(part)
        rows += (activity.num_rows if activity is not None else 0) + sum(t.num_rows for t in engagement.values())
    return rows + clock.timed(lambda: engine.popularity().num_rows + sum(t.num_rows for t in engine.weekly().values()))


def _child(path: str, home: str, regions: list[str], rounds: int, out) -> None:
    logging.disable(logging.WARNING)
    from atelier.features.compute_duckdb import DuckDBEngine
    from atelier.features.pipeline import NumpyEngine

    times, rows, events = [], 0, 0
    for _ in range(rounds):
        seconds, rows, events = 0.0, 0, 0
        for region in regions:
            parts, clients, products, schema = _inputs(home, region)
            clock = _Clock(parts)
            rows += _tables(NumpyEngine(products, clients) if path == "pandas" else DuckDBEngine(products, clients, schema), clock)
            seconds, events = seconds + clock.seconds, events + clock.events
        times.append(seconds)
    out.put({"events": events, "rows": rows, "seconds": statistics.median(times), "times": times,
             "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20})


def _measure(path: str, home: str, regions: list[str], rounds: int) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(path, home, regions, rounds, q))
    p.start()
    result = q.get()
    p.join()
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=100_000)
    ap.add_argument("--events-per-client", type=float, default=40.0)
    ap.add_argument("--region", default="eu", help="a region, or `all` (one after the other, in each path's process)")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    logging.disable(logging.WARNING)

    from atelier.features.pipeline import compute_features
    from atelier.regions import region_codes
    from atelier.settings import Settings

    regions = region_codes() if args.region == "all" else [args.region]
    spec = {"clients": args.clients, "products": 5000, "events_per_client": args.events_per_client, "chunk_clients": 50_000}
    home, fresh = bench_home(f"pipeline_{args.clients}", spec)
    s = Settings(home=home)
    if fresh:
        make_world(s, spec, [], apply=False)
        mark_ready(home, spec)

    results = {}
    for path in ("pandas", "duckdb"):
        log(f"{path}: {args.rounds} rounds of the feature tables, in a process of its own")
        results[path] = _measure(path, str(home), regions, args.rounds)
    log("the full `atelier features compute` once, for scale")
    t = time.perf_counter()
    for region in regions:
        compute_features(s, region)
    full = time.perf_counter() - t

    if results["pandas"]["rows"] != results["duckdb"]["rows"]:  # not the same tables: no comparison to make
        raise SystemExit(f"the paths computed {results['pandas']['rows']:,} and {results['duckdb']['rows']:,} rows")
    events = results["pandas"]["events"]
    rows = []
    for path, label in (("pandas", "pandas/numpy (today's path)"), ("duckdb", "SQL on DuckDB (sqlglot from BigQuery)")):
        r = results[path]
        rows.append([label, f"{r['seconds']:.2f}", f"{events / r['seconds']:,.0f}", f"{results['pandas']['seconds'] / r['seconds']:.2f}x",
                     f"{r['peak_rss_gib']:.2f}", f"{r['rows']:,}"])
    rows.append(["full `atelier features compute` (once)", f"{full:.2f}", f"{events / full:,.0f}", "-", "-", "-"])
    title = (f"Feature tables, region {args.region}: {events:,} events of {args.clients:,} clients (all regions), "
             f"median of {args.rounds} rounds, each path in its own process, a client-complete part at a time")
    tbl = table(title, ["path", "seconds", "events/s", "vs pandas", "peak RSS GiB", "rows out"], rows)
    speed = results["pandas"]["seconds"] / results["duckdb"]["seconds"]
    peak = results["duckdb"]["peak_rss_gib"]
    goals = table("Issue 12's goals, for the DuckDB path (asked at 1M clients and 50M events)", ["goal", "measured", "met"],
                  [[">= 3x the pandas path's events/s", f"{speed:.2f}x", "yes" if speed >= 3 else "NO"],
                   ["peak RSS <= 6 GiB", f"{peak:.2f} GiB (pandas path {results['pandas']['peak_rss_gib']:.2f})", "yes" if peak <= 6 else "NO"]])
    name = "pipeline" if args.clients == 100_000 and args.region == "eu" else f"pipeline_{args.clients}_{args.region}"
    save(name, {"results": {**results, "full_compute_s": full, "spec": spec, "region": args.region}, "tables": [tbl, goals]})


if __name__ == "__main__":
    main()
