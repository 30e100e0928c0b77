"""What the ranking stage reads from the two-tower: its catalog's vectors (`TowerView`) and each
client's query vector and nearest products (`Retrieved`), the same offline and online."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FROM_TOWER = 200  # the tower's nearest products taken as candidates, per client


@dataclass
class TowerView:
    """The two-tower's catalog as the ranker reads it: product vectors, their mean and covariance.

    A client's scores over the whole catalog have mean q·μ and variance qᵀΣq, so the z-score of a
    candidate needs no pass over the catalog: serving stays cheap at 100,000 products. The z-score,
    not the raw score, is the feature because the towers the ranker learns from and the tower that
    serves are different fits, whose raw scores live on different scales.
    """

    catalog: np.ndarray  # [products, dim]
    mean: np.ndarray  # [dim]
    cov: np.ndarray  # [dim, dim]

    @staticmethod
    def of(catalog: np.ndarray) -> TowerView:
        c = np.asarray(catalog, np.float64)
        return TowerView(np.asarray(catalog, np.float32), c.mean(0), np.cov(c, rowvar=False, bias=True).reshape(c.shape[1], c.shape[1]))

    def z(self, queries: np.ndarray, rows: np.ndarray, items: np.ndarray, chunk: int = 262_144) -> np.ndarray:
        """z-scores of the (client row, product) pairs; `queries` holds one vector per client row."""
        q = np.asarray(queries, np.float64)
        mean = q @ self.mean
        sd = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", q, self.cov, q), 1e-12))
        out = np.empty(len(rows), np.float32)
        for s in range(0, len(rows), chunk):
            r, i = rows[s : s + chunk], items[s : s + chunk]
            score = np.einsum("ij,ij->i", queries[r], self.catalog[i])
            out[s : s + chunk] = (score - mean[r]) / sd[r]
        return out


@dataclass
class Retrieved:
    """What the ranker reads from the two-tower for a batch of clients (offline and online alike)."""

    view: TowerView
    queries: np.ndarray  # one query vector per client
    lists: list[np.ndarray]  # the tower's nearest products per client, best first, excluded ones left out

    @staticmethod
    def of(view: TowerView, queries: np.ndarray, lists: list[np.ndarray], exclude: list[np.ndarray] | None) -> Retrieved:
        """From the tower's lists as fetched (with room for the exclusions): each cut to FROM_TOWER
        once the client's excluded products are left out, so candidates and places agree."""
        empty = np.zeros(0, np.int64)
        return Retrieved(view, queries, [without(t, exclude[u] if exclude is not None else empty, FROM_TOWER) for u, t in enumerate(lists)])

    def take(self, rows: np.ndarray) -> Retrieved:
        """The clients at `rows`, in that order."""
        return Retrieved(self.view, self.queries[rows], [self.lists[i] for i in rows])


def tower_lists(scores, exclude: list[np.ndarray] | None) -> list[np.ndarray]:
    """The tower's FROM_TOWER best products per client from exact scores (clients x products: an
    array, or `evaluate.RowScores` computed a block at a time)."""
    from atelier.models.recommend.evaluate import top_k

    if not len(scores):
        return []
    return list(top_k(scores, FROM_TOWER, exclude))


def without(items: np.ndarray, gone: np.ndarray, n: int) -> np.ndarray:
    items = np.asarray(items, np.int64)
    return (items[~np.isin(items, gone)] if len(gone) else items)[:n]
