"""Top-k over the catalog: exact (brute force) against approximate (FAISS HNSW), 100k and 1M products.

    .venv/bin/python benchmarks/retrieval.py [--sizes 100000,1000000]

For each size, a world with that many products (30k clients) and the eu model trained on it
(two epochs): its exported candidate vectors are the catalog, its held-out client vectors the
queries, so both have a trained model's geometry. Exact search is FAISS's flat inner-product
index (plain numpy beside it, for reference); the approximate index is the one `atelier train`
builds, tuned until its top-10 matches exact search at >= 0.95 recall. Throughput is one query
per call on one core, as a serving worker runs.
"""

from __future__ import annotations

import argparse
import glob
import logging

import numpy as np
from common import Timer, bench_home, log, make_world, mark_ready, save, table


def trained_catalog(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(candidate vectors, query vectors) of an eu model trained on a world with n products."""
    from atelier.models.recommend.train import train_region
    from atelier.models.recommend.two_tower import TrainConfig
    from atelier.settings import Settings

    spec = {"clients": 30_000, "products": n, "events_per_client": 12.0, "chunk_clients": 50_000}
    home, fresh = bench_home(f"retrieval-{n}", spec)
    s = Settings(home=home)
    if fresh:
        make_world(s, spec, ["eu"])
        log(f"{n:,} products: training the eu model")
        train_region(s, "eu", TrainConfig(epochs=2))
        mark_ready(home, spec)
    run = sorted(glob.glob(f"{home}/runs/eu/*/query_sample.npy"))[-1]
    candidates = sorted(glob.glob(f"{home}/runs/eu/*/model/candidates.npy"))[-1]
    return np.load(candidates), np.load(run)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100000,1000000")
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    import faiss

    from atelier.models.recommend.index import AnnIndex, ExactIndex, queries_per_second, recall_at_k

    rows, results = [], {}
    for n in [int(x) for x in args.sizes.split(",")]:
        vectors, queries = trained_catalog(n)
        faiss.omp_set_num_threads(2)
        exact = ExactIndex(vectors)
        with Timer() as build:
            ann = AnnIndex.build(vectors)
        tuning = ann.tune(exact, queries[:1000], target=0.95)
        faiss.omp_set_num_threads(1)  # one query per call, one core, as one serving worker does
        _, truth = exact.search(queries, 10)
        _, got = ann.search(queries, 10)
        recall = recall_at_k(got, truth)
        sample = queries[:300]
        qps_exact = queries_per_second(exact.search, sample)
        qps_numpy = queries_per_second(lambda q, k: np.argpartition(-(q @ vectors.T), k, axis=1)[:, :k], sample[:100])
        qps_ann = queries_per_second(ann.search, sample, repeat=3)
        results[n] = {"vectors": vectors.shape, "queries": len(queries), "build_s": build.seconds, "index": tuning["kind"], "probe": tuning["probe"], "recall@10": recall,
                      "qps_exact_faiss": qps_exact, "qps_exact_numpy": qps_numpy, "qps_approximate": qps_ann, "speedup": qps_ann / qps_exact}
        log(f"{n:,}: {results[n]}")
        rows.append([f"{n:,}", "exact (FAISS flat)", "1.000", f"{qps_exact:,.0f}", f"{1e3 / qps_exact:.3f}", "1.0x", ""])
        rows.append([f"{n:,}", "exact (numpy)", "1.000", f"{qps_numpy:,.0f}", f"{1e3 / qps_numpy:.3f}", f"{qps_numpy / qps_exact:.1f}x", ""])
        rows.append([f"{n:,}", f"IVF{ann.partitions}, nprobe {tuning['probe']}", f"{recall:.3f}", f"{qps_ann:,.0f}", f"{1e3 / qps_ann:.3f}", f"{qps_ann / qps_exact:.1f}x", f"{build.seconds:.0f} s"])
    text = table("Retrieval: exact vs approximate top-10 over a trained catalog, one query per call, one core", ["products", "index", "recall@10", "queries/s", "ms/query", "vs exact", "build"], rows)
    save("retrieval", {"results": results, "tables": [text]})


if __name__ == "__main__":
    main()
