"""Top-k indexes over candidate embeddings: exact (brute force) and approximate (FAISS IVF or HNSW).

Scores are inner products of L2-normalized vectors. The approximate index is tuned after it is
built: its search breadth grows until its top-10 agrees with exact search on sample queries at the target
recall (nprobe, or efSearch), and the recall reached is stored with the model, with both indexes' measured latency:
serving uses the approximate index only where it is the faster of the two at that recall (on a
small catalog, or embeddings without much structure, brute force wins). TFRS's ScaNN layer would
need TensorFlow 2.20, so the index lives beside the SavedModel rather than inside it.
"""

from __future__ import annotations

import time
from pathlib import Path

import faiss
import numpy as np


class ExactIndex:
    """Brute force: every candidate scored (FAISS flat inner-product index, batched)."""

    def __init__(self, vectors: np.ndarray):
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.flat = faiss.IndexFlatIP(self.vectors.shape[1])
        self.flat.add(self.vectors)

    def search(self, queries: np.ndarray, k: int, subset: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) of the k best, best first; `subset` limits the search to those ids."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if subset is None:
            return self.flat.search(queries, min(k, self.flat.ntotal))
        vectors = self.vectors[subset]
        scores = queries @ vectors.T
        k = min(k, scores.shape[1])
        if k == 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        part_scores = np.take_along_axis(scores, part, axis=1)
        order = np.argsort(-part_scores, axis=1)
        ids = np.take_along_axis(part, order, axis=1)
        return np.take_along_axis(part_scores, order, axis=1), subset[ids]


class AnnIndex:
    """Approximate inner-product search: FAISS IVF-Flat (default) or HNSW.

    IVF partitions the catalog around ~sqrt(N) centroids and scans the `nprobe` partitions
    closest to the query. Client vectors from the query tower do not lie among the product
    vectors the index is built on; HNSW graphs serve such queries poorly (they need a huge
    efSearch), IVF's scan of whole partitions does not. `probe` is nprobe (IVF) or efSearch (HNSW).
    """

    def __init__(self, index: faiss.Index, probe: int):
        self.index = index
        self.kind = "hnsw" if isinstance(index, faiss.IndexHNSW) else "ivf"
        self.set_probe(probe)

    @staticmethod
    def build(vectors: np.ndarray, kind: str = "ivf") -> "AnnIndex":
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        n, dim = vectors.shape
        if kind == "hnsw":
            index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = 80
            index.add(vectors)
            return AnnIndex(index, 64)
        nlist = int(max(1, min(65_536, 2 ** round(np.log2(4 * np.sqrt(n))), n // 39)))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        sample = vectors[np.random.default_rng(0).choice(n, size=min(n, 256 * nlist), replace=False)]
        index.train(sample)
        index.add(vectors)
        return AnnIndex(index, 8)

    @property
    def partitions(self) -> int:
        return self.index.nlist if self.kind == "ivf" else 0

    def set_probe(self, probe: int) -> None:
        self.probe = int(probe)
        if self.kind == "hnsw":
            self.index.hnsw.efSearch = self.probe
        else:
            self.index.nprobe = min(self.probe, self.index.nlist)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if self.kind == "hnsw" and self.probe < k:
            self.index.hnsw.efSearch = k
            try:
                return self.index.search(queries, min(k, self.index.ntotal))
            finally:
                self.index.hnsw.efSearch = self.probe
        return self.index.search(queries, min(k, self.index.ntotal))

    def tune(self, exact: ExactIndex, queries: np.ndarray, target: float = 0.95, k: int = 10) -> dict:
        """Smallest probe (doubling) whose recall@k against exact search reaches `target`, and which
        index answers one query faster (`use`: "approximate" or "exact")."""
        _, truth = exact.search(queries, k)
        probe, limit = (16, 4096) if self.kind == "hnsw" else (1, self.index.nlist)
        while True:
            self.set_probe(probe)
            _, got = self.search(queries, k)
            recall = recall_at_k(got, truth)
            if recall >= target or probe >= limit:
                break
            probe *= 2
        sample = queries[:200]
        ann_ms = 1e3 / queries_per_second(self.search, sample, k)
        exact_ms = 1e3 / queries_per_second(exact.search, sample, k)
        use = "approximate" if recall >= target and ann_ms < exact_ms else "exact"
        return {"kind": f"faiss {'HNSW32,Flat' if self.kind == 'hnsw' else f'IVF{self.index.nlist},Flat'} (inner product)",
                "probe": probe, "recall@10_vs_exact": recall, "target": target, "queries": len(queries),
                "approximate_ms": ann_ms, "exact_ms": exact_ms, "use": use}

    def save(self, path: Path) -> None:
        faiss.write_index(self.index, str(path))

    @staticmethod
    def load(path: Path, probe: int) -> "AnnIndex":
        return AnnIndex(faiss.read_index(str(path)), probe)


def recall_at_k(got: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(g) & set(t)) / len(t) for g, t in zip(got, truth)]))


def queries_per_second(search, queries: np.ndarray, k: int = 10, repeat: int = 1) -> float:
    """Single-query throughput: one query per call, as a service answers requests."""
    t0 = time.perf_counter()
    for _ in range(repeat):
        for q in queries:
            search(q[None, :], k)
    return repeat * len(queries) / (time.perf_counter() - t0)
