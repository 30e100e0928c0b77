"""Materialization into Redis and online reads, beside raw Redis and Feast's stock path.

    .venv/bin/python benchmarks/feature_store.py [--clients 1000000]

World: --clients clients over the three regions (8 events each on average), features computed.
Materialization: the query tower's views (client_profile, client_attributes, client_activity:
17 features) of every client of every region, each region into its own redis-server, with
atelier's batch engine; baseline 1: a raw pipelined redis-py write of exactly the same keys,
fields and value bytes (encoded beforehand, not timed); baseline 2: Feast's stock local engine on
a sample of clients. Online: one client's query-tower features, our reader against a raw HMGET of
the same key and fields, and Feast's get_online_features.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import random

from common import Timer, bench_home, log, make_world, mark_ready, percentiles, save, table

VIEWS = ["client_profile", "client_attributes", "client_activity"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=1_000_000)
    ap.add_argument("--stock-sample", type=int, default=20_000, help="clients materialized by Feast's stock engine")
    ap.add_argument("--reads", type=int, default=3000)
    args = ap.parse_args()
    logging.disable(logging.WARNING)

    spec = {"clients": args.clients, "products": 5000, "events_per_client": 8.0, "chunk_clients": 100_000}
    home, fresh = bench_home("feature_store", spec)
    from atelier.features import redis_codec as rc
    from atelier.features import repo
    from atelier.features.engine import latest_rows
    from atelier.features.online import OnlineFeatures, feature_refs
    from atelier.local_redis import LocalRedis
    from atelier.regions import region_codes
    from atelier.settings import Settings

    regions = region_codes()
    if fresh:
        s0 = Settings(home=home)
        make_world(s0, spec, regions, apply=False)
        mark_ready(home, spec)

    servers = {r: LocalRedis(f"atelier-{r}", f"bench-{r}").start() for r in regions}
    try:
        s = Settings(home=home, online_store="redis", redis={r: v.endpoint() for r, v in servers.items()})
        end = dt.datetime(2026, 11, 28, tzinfo=dt.timezone.utc)
        for r in regions:
            repo.apply(s, r)

        # 1. atelier's engine, every client of every region
        clients, seconds = 0, 0.0
        for r in regions:
            with Timer() as t:
                written = repo.materialize(s, r, incremental=False, end=end, views=VIEWS)
            clients += written["client_profile"]
            seconds += t.seconds
            log(f"{r}: {written} in {t.seconds:.1f}s")
        ours_rate = clients / seconds

        # 2. raw pipelined redis-py, the same rows (bytes prepared outside the timing)
        raw_seconds = 0.0
        for r in regions:
            store = repo.feature_store(s, r)
            offline = store._get_provider().offline_store
            batches = []
            for v in VIEWS:
                fv = store.get_feature_view(v)
                rows = latest_rows(store.config, offline, fv, repo.EPOCH, end)
                keys = rc.entity_keys(rows.column("client_id"), "client_id", fv.entity_columns[0].dtype.to_value_type(), store.project).to_pylist()
                fields = [rc.field_name(v, f.name) for f in fv.features] + [f"_ts:{v}".encode()]
                values = [rc.encode_values(rows.column(f.name), f.dtype.to_value_type()).to_pylist() for f in fv.features]
                values.append(rc.encode_timestamps(rows.column(fv.batch_source.timestamp_field)).to_pylist())
                batches.append((keys, [dict(zip(fields, vals)) for vals in zip(*values)]))
            client = servers[r].client()
            client.flushall()
            with Timer() as t:
                for keys, mappings in batches:
                    for i in range(0, len(keys), 10_000):
                        with client.pipeline(transaction=False) as pipe:
                            for k, m in zip(keys[i : i + 10_000], mappings[i : i + 10_000]):
                                pipe.hset(k, mapping=m)
                            pipe.execute()
            raw_seconds += t.seconds
        raw_rate = clients / raw_seconds

        # 3. Feast's stock local engine, on a sample of one region's clients
        sample_region = "eu"
        store = repo.feature_store(s, sample_region)
        offline, online = store._get_provider().offline_store, store._get_provider().online_store
        from feast.infra.compute_engines.local.nodes import _convert_arrow_to_proto

        with Timer() as t:
            for v in VIEWS:
                fv = store.get_feature_view(v)
                rows = latest_rows(store.config, offline, fv, repo.EPOCH, end).slice(0, args.stock_sample)
                join = {c.name: c.dtype.to_value_type() for c in fv.entity_columns}
                online.online_write_batch(store.config, fv, _convert_arrow_to_proto(rows, fv, join), None)
        stock_rate = min(args.stock_sample, rows.num_rows) / t.seconds

        rows_out = [
            ["atelier batch engine (Feast layout)", f"{ours_rate:,.0f}", f"{ours_rate / raw_rate:.2f}x"],
            ["raw pipelined redis-py HSET, same bytes", f"{raw_rate:,.0f}", "1.00x"],
            [f"Feast stock engine ({args.stock_sample:,} clients)", f"{stock_rate:,.0f}", f"{stock_rate / raw_rate:.2f}x"],
        ]
        mat = table(f"Materialization into Redis: {clients:,} clients x 3 views (17 features + 3 timestamps), clients/s", ["path", "clients/s", "vs raw"], rows_out)

        # 4. Online reads: one client's query-tower features
        store = repo.feature_store(s, "eu")
        refs = feature_refs(store, "query_tower_v1")
        reader = OnlineFeatures(store, refs)
        raw = servers["eu"].client()
        ids = [i for i in (f"EU{n:08d}" for n in range(0, min(args.clients, 200_000))) if True][: args.reads * 3]
        random.Random(0).shuffle(ids)
        ids = [i for i in ids if reader.get_one(i) is not None][: args.reads]
        fields = reader._fields
        measure = {
            "atelier reader (17 features, decoded)": lambda i: reader.get_one(i),
            "raw HMGET, same key and fields": lambda i: raw.hmget(reader._key(i), fields),
            "Feast get_online_features": lambda i: store.get_online_features(features=refs, entity_rows=[{"client_id": i}]),
        }
        samples = {k: [] for k in measure}
        for _ in range(3):  # interleaved rounds: noise hits every path alike
            for name, f in measure.items():
                for i in ids:
                    with Timer() as t:
                        f(i)
                    samples[name].append(t.seconds)
        stats = {k: percentiles(v) for k, v in samples.items()}
        base = stats["raw HMGET, same key and fields"]
        rows_read = [[k, round(v["p50_ms"], 3), round(v["p99_ms"], 3), f"{v['p99_ms'] / base['p99_ms']:.2f}x"] for k, v in stats.items()]
        rd = table(f"Online read of one client's query-tower features ({len(ids):,} clients x 3 rounds)", ["path", "p50 ms", "p99 ms", "p99 vs raw"], rows_read)
        save("feature_store", {"clients": clients, "materialize_clients_per_s": {"atelier": ours_rate, "raw": raw_rate, "feast_stock": stock_rate},
                               "online_read": stats, "tables": [mat, rd]})
    finally:
        for v in servers.values():
            v.stop()


if __name__ == "__main__":
    main()
