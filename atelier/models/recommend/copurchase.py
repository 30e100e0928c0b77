"""Co-purchase: for each product, the products bought with it, as a sparse neighbour table.

The strongest simple recommenders on retail data are item-item models (EASE, item-kNN), and the
ranking stage uses one as its main candidate source and feature. Serving needs it small and fast:
each product keeps its `NEIGHBOURS` strongest neighbours, so a client's scores are a scatter-add
over the neighbours of what the client bought (at most a few thousand additions a request).

The weights are EASE's where the catalog allows the products x products inverse, cosine
similarities of co-purchases otherwise (counted pair by pair, never as a dense matrix).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from atelier.models.recommend import baselines as bl

NEIGHBOURS = 200
HISTORY = 100  # a client's last purchases, as the online store keeps them (client_activity.purchased_products)


@dataclass
class CoPurchase:
    neighbours: np.ndarray  # int32 [products, NEIGHBOURS], -1 where none
    weights: np.ndarray  # float32 [products, NEIGHBOURS]
    method: str

    @staticmethod
    def fit(h: bl.History, lam: float | None, neighbours: int = NEIGHBOURS) -> CoPurchase:
        """EASE (with λ) on catalogs up to EASE_MAX_PRODUCTS, co-purchase cosine beyond (or when λ is None)."""
        if lam is not None and h.products <= bl.EASE_MAX_PRODUCTS:
            return CoPurchase._top(bl.Ease(h, lam).weights, neighbours, f"EASE (λ={lam:g})")
        rows, cols, vals = _cosine_pairs(h)
        dense_rows = np.full((h.products, neighbours), -1, np.int32)
        dense_w = np.zeros((h.products, neighbours), np.float32)
        order = np.lexsort((-vals, rows))
        rows, cols, vals = rows[order], cols[order], vals[order]
        starts = np.searchsorted(rows, np.arange(h.products))
        rank = np.arange(len(rows)) - starts[rows]
        keep = rank < neighbours
        dense_rows[rows[keep], rank[keep]] = cols[keep]
        dense_w[rows[keep], rank[keep]] = vals[keep]
        return CoPurchase(dense_rows, dense_w, "co-purchase cosine")

    @staticmethod
    def _top(weights: np.ndarray, neighbours: int, method: str) -> CoPurchase:
        k = min(neighbours, weights.shape[1] - 1)
        idx = np.argpartition(-weights, k - 1, axis=1)[:, :k] if k > 0 else np.zeros((len(weights), 0), int)
        w = np.take_along_axis(weights, idx, axis=1)
        w = np.where(w > 0, w, 0.0)  # negative EASE weights say "not with": no candidate from them
        idx = np.where(w > 0, idx, -1)
        return CoPurchase(idx.astype(np.int32), w.astype(np.float32), method)

    def scores(self, history: list[np.ndarray], decay: float | None = None) -> np.ndarray:
        """Scores over the catalog per client; `history` holds product indices, oldest first.

        With `decay`, a purchase `decay` places older than the newest counts half as much.
        """
        products = len(self.neighbours)
        out = np.zeros((len(history), products), np.float32)
        for u, items in enumerate(history):
            if not len(items):
                continue
            items = np.asarray(items)
            weight = np.ones(len(items), np.float32) if decay is None else 0.5 ** (np.arange(len(items))[::-1] / decay)
            nb, w = self.neighbours[items], self.weights[items] * weight[:, None]
            ok = nb >= 0
            np.add.at(out[u], nb[ok], w[ok])
        return out

    def last_max(self, history: list[np.ndarray], last: int = 5) -> np.ndarray:
        """Per client, each product's strongest link to one of the client's `last` purchases."""
        out = np.zeros((len(history), len(self.neighbours)), np.float32)
        for u, items in enumerate(history):
            for j in np.asarray(items)[-last:]:
                nb, w = self.neighbours[j], self.weights[j]
                ok = nb >= 0
                np.maximum.at(out[u], nb[ok], w[ok])
        return out

    def save(self, path: Path) -> None:
        np.savez(path, neighbours=self.neighbours, weights=self.weights, method=np.array(self.method))

    @staticmethod
    def load(path: Path) -> CoPurchase:
        z = np.load(path)
        return CoPurchase(z["neighbours"], z["weights"], str(z["method"]))


def _cosine_pairs(h: bl.History) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, cosine) for every pair of distinct products some client bought both of."""
    known = h.client_row >= 0
    pairs = np.unique(np.stack([h.client_row[known], h.product[known]], 1), axis=0)  # (client, product), once each
    buyers = np.bincount(pairs[:, 1], minlength=h.products).astype(np.float64)
    starts = np.flatnonzero(np.r_[True, pairs[1:, 0] != pairs[:-1, 0]])
    ends = np.r_[starts[1:], len(pairs)]
    rows, cols = [], []
    for s, e in zip(starts, ends):
        items = pairs[s:e, 1][-HISTORY:]
        a, b = np.meshgrid(items, items)
        off = a != b
        rows.append(a[off])
        cols.append(b[off])
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    key = np.concatenate(rows).astype(np.int64) * h.products + np.concatenate(cols)
    uniq, counts = np.unique(key, return_counts=True)
    i, j = uniq // h.products, uniq % h.products
    return i, j, (counts / np.sqrt(buyers[i] * buyers[j])).astype(np.float32)
