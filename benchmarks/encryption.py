"""The price of encryption at rest: materialization and historical retrieval, encrypted vs plaintext.

    .venv/bin/python benchmarks/encryption.py [--clients 300000] [--rounds 3]

The same data twice: the region's datasets as the platform writes them (Parquet modular
encryption, AES-GCM, keys wrapped by the region's master key), and a plaintext copy made for
this comparison only. Each round times both, alternately: materializing the query tower's views
into a redis-server, and a point-in-time retrieval of the query tower's features for 200k
(client, day) rows. Medians over rounds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import shutil
import statistics

from common import Timer, bench_home, log, make_world, mark_ready, save, table

VIEWS = ["client_profile", "client_attributes", "client_activity"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=300_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rows", type=int, default=200_000)
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    spec = {"clients": args.clients, "products": 5000, "events_per_client": 20.0, "chunk_clients": 100_000}
    home, fresh = bench_home("encryption", spec)
    from atelier.features import repo
    from atelier.local_redis import LocalRedis
    from atelier.protect.keys import key_store
    from atelier.protect.parquet import MARKER, dataset_info, read_dataset, write_dataset
    from atelier.settings import Settings

    plain_home = home.parent / "encryption-plaintext"
    if fresh:
        s0 = Settings(home=home)
        make_world(s0, spec, ["eu"], apply=False)
        log("making the plaintext copy")
        shutil.rmtree(plain_home, ignore_errors=True)
        shutil.copytree(home, plain_home)
        for marker in plain_home.rglob(MARKER):
            info = dataset_info(marker.parent)
            if info["encrypted"]:  # each region's datasets open only with that region's keys
                table_ = read_dataset(home / marker.parent.relative_to(plain_home), key_store(s0, info["region"]))
                write_dataset(marker.parent, table_, None, encrypt=False)
        mark_ready(home, spec)

    redis = LocalRedis("atelier-eu", "bench-enc").start()
    try:
        homes = {"encrypted": home, "plaintext": plain_home}
        settings = {k: Settings(home=h, online_store="redis", redis={"eu": redis.endpoint()}) for k, h in homes.items()}
        for name, s in settings.items():
            import os

            os.environ["ATELIER_HOME"] = str(s.home)
            repo.apply(s, "eu")
        events = read_dataset(home / "lake" / "events" / "region=eu", key_store(Settings(home=home), "eu"), columns=["client_id", "event_timestamp"]).to_pandas()
        entity = events.assign(event_timestamp=events.event_timestamp.dt.floor("D")).drop_duplicates().sample(args.rows, random_state=0).reset_index(drop=True)
        timings = {(k, w): [] for k in homes for w in ("materialize", "historical")}
        for rnd in range(args.rounds):
            for name, s in settings.items():
                os.environ["ATELIER_HOME"] = str(s.home)
                redis.client().flushall()
                with Timer() as t:
                    written = repo.materialize(s, "eu", incremental=False, end=dt.datetime(2026, 11, 28, tzinfo=dt.timezone.utc), views=VIEWS)
                timings[(name, "materialize")].append(t.seconds)
                with Timer() as t:
                    df = repo.historical_features(s, "eu", entity, "query_tower_v1")
                timings[(name, "historical")].append(t.seconds)
                log(f"round {rnd} {name}: materialize {timings[(name, 'materialize')][-1]:.1f}s ({sum(written.values()):,} rows), historical {timings[(name, 'historical')][-1]:.1f}s ({len(df):,} rows)")
        rows, out = [], {}
        for work in ("materialize", "historical"):
            enc, plain = statistics.median(timings[("encrypted", work)]), statistics.median(timings[("plaintext", work)])
            out[work] = {"encrypted_s": enc, "plaintext_s": plain, "ratio": enc / plain}
            rows.append([work, f"{enc:.2f}", f"{plain:.2f}", f"{enc / plain:.2f}x", "yes" if enc / plain <= 1.3 else "NO"])
        text = table(f"Encryption at rest, region eu of a {args.clients:,}-client world: median of {args.rounds} rounds (seconds)",
                     ["work", "encrypted", "plaintext", "ratio", "<= 1.3x"], rows)
        save("encryption", {"clients": args.clients, "rows": args.rows, "results": out, "timings": {f"{k[0]}/{k[1]}": v for k, v in timings.items()}, "tables": [text]})
    finally:
        redis.stop()


if __name__ == "__main__":
    main()
