"""The feature pipeline's aggregations on two engines: the pandas/numpy path and the SQL on DuckDB.

    .venv/bin/python benchmarks/pipeline.py [--clients 100000] [--events-per-client 40] [--region eu]

World: --clients clients over the three regions (generated; reused while the spec holds). One
region's events, decrypted into Arrow once (not timed). Then, each path in its own process (so
that its peak RSS is its own), the same feature tables (issue 12), whole, as Feast reads them:
* client_activity (windows, favourites, last purchase, product histories), one
  maison_engagement per maison, product_popularity;
* the weekly sales and clientele tables per country and store.
The pandas path is what `atelier features compute` runs (atelier.features.pipeline,
atelier.features.series); the DuckDB path runs atelier.features.sql's BigQuery-dialect queries,
transpiled by sqlglot, over the same Arrow tables in memory, as BigQuery runs them (the maisons'
tables cut from one staging table of every maison's windows). Each path runs --rounds times; the
median is reported. The full `atelier features compute` of the region (decryption, encryption
and writing included) is timed once beside them, for scale.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing as mp
import resource
import statistics
import time

from common import bench_home, log, make_world, mark_ready, save, table


def _load(home: str, region: str):
    from atelier.protect.keys import LocalKeyStore
    from atelier.protect.parquet import read_dataset
    from atelier.settings import Settings

    s = Settings(home=home)
    keys = LocalKeyStore(s.paths.keys, region)
    events = read_dataset(s.paths.client_table("events", region), keys)
    clients = read_dataset(s.paths.client_table("clients", region), keys, columns=["client_id", "country"])
    products = read_dataset(s.paths.catalog("products"), None, columns=["product_id", "maison", "category"])
    return events, clients, products


def _pandas(events, clients, products) -> int:
    """Every feature table as `atelier features compute` computes it (one client-complete table)."""
    from atelier.features import series
    from atelier.features.pipeline import client_activity, daily_counts, engaged_events, events_frame, maison_engagement, product_popularity

    df = events_frame(events, products.to_pandas().set_index("product_id"))
    engaged = engaged_events(df)
    rows = client_activity(engaged).num_rows
    for _, part in engaged.groupby("maison", sort=False):
        rows += maison_engagement(part).num_rows
    rows += product_popularity(daily_counts(df)).num_rows
    lines = series.sales_lines(df, clients.to_pandas().set_index("client_id")["country"])
    for kind, compute in (("sales", series.weekly_sales), ("clientele", series.weekly_clientele)):
        frame = series.combine([compute(lines)], series.KEYS[kind])
        rows += sum(series.to_table(frame, kind, level).num_rows for level in series.LEVELS)
    return rows


def _duckdb(events, clients, products) -> int:
    """The same tables by atelier.features.sql's queries (BigQuery's dialect, transpiled by sqlglot),
    as `atelier features compute --engine bigquery` runs them: every maison's windows once into a
    staging table, each maison's table cut from it."""
    import pyarrow.compute as pc

    from atelier.features import series, sql
    from atelier.features.compute_bigquery import STAGING

    queries = [sql.client_activity(), sql.product_popularity()]
    queries += [sql.weekly_table(kind, level) for kind in series.TABLES for level in series.LEVELS]
    rows = sum(sql.run(q, events=events, products=products, clients=clients).num_rows for q in queries)
    staging = {STAGING: sql.run(sql.maison_engagement_windows(), events=events, products=products, clients=clients)}
    maisons = [sql.maison_engagement(m, windows=STAGING) for m in pc.unique(products.column("maison")).to_pylist()]
    return rows + sum(sql.run(q, events=events, tables=staging).num_rows for q in maisons)


def _child(path: str, home: str, region: str, rounds: int, out) -> None:
    logging.disable(logging.WARNING)
    events, clients, products = _load(home, region)
    fn = {"pandas": _pandas, "duckdb": _duckdb}[path]
    times, rows = [], 0
    for _ in range(rounds):
        t = time.perf_counter()
        rows = fn(events, clients, products)
        times.append(time.perf_counter() - t)
    out.put({"events": events.num_rows, "rows": rows, "seconds": statistics.median(times), "times": times,
             "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20})


def _measure(path: str, home: str, region: str, rounds: int) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(path, home, region, rounds, q))
    p.start()
    result = q.get()
    p.join()
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=100_000)
    ap.add_argument("--events-per-client", type=float, default=40.0)
    ap.add_argument("--region", default="eu")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    logging.disable(logging.WARNING)

    from atelier.features.pipeline import compute_features
    from atelier.settings import Settings

    spec = {"clients": args.clients, "products": 5000, "events_per_client": args.events_per_client, "chunk_clients": 50_000}
    home, fresh = bench_home(f"pipeline_{args.clients}", spec)
    s = Settings(home=home)
    if fresh:
        make_world(s, spec, [], apply=False)
        mark_ready(home, spec)

    results = {}
    for path in ("pandas", "duckdb"):
        log(f"{path}: {args.rounds} rounds of the feature tables, in a process of its own")
        results[path] = _measure(path, str(home), args.region, args.rounds)
    log("the full `atelier features compute` once, for scale")
    t = time.perf_counter()
    compute_features(s, args.region)
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
             f"median of {args.rounds} rounds, each path in its own process")
    tbl = table(title, ["path", "seconds", "events/s", "vs pandas", "peak RSS GiB", "rows out"], rows)
    save("pipeline" if args.clients == 100_000 else f"pipeline_{args.clients}",
         {"results": {**results, "full_compute_s": full, "spec": spec, "region": args.region}, "tables": [tbl]})


if __name__ == "__main__":
    main()
