"""What the ranking stage knows, offline and online alike: the products at one moment
(`Context`, exported with the model) and each client (`Clients`, read from the query features).

Training and serving build both the same way, so an online answer is the offline answer for the
same feature values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from atelier.models.recommend.copurchase import CoPurchase

POPULARITY = ("purchases_7d", "purchases_30d", "purchases_90d", "purchases_365d")  # product_popularity features


@dataclass
class Context:
    """What the stage knows about products at one moment (exported with the model for serving).

    `copurchase` holds EASE's weights (co-purchase cosine on big catalogs), `similar` co-purchase
    cosine similarities: two views of "bought together" that disagree usefully. `popularity` is
    read from the online store when serving; the rest is a snapshot taken at export.
    """

    copurchase: CoPurchase
    similar: CoPurchase
    popularity: dict[str, np.ndarray]  # POPULARITY feature -> per product
    country_share: dict[str, np.ndarray]  # country -> share of its recent purchases per product
    days_on_sale: np.ndarray  # days since each product's first sale (0 if never sold)
    # Per product: its maison as a code (-1 unknown) and log price (NaN unknown), for the
    # client's loyalty to the candidate's maison and the candidate's price against what the
    # client buys. None in stages exported before these features (they read as "no signal").
    maison: np.ndarray | None = None
    log_price: np.ndarray | None = None

    @property
    def popularity_7d(self) -> np.ndarray:
        return self.popularity["purchases_7d"]

    @property
    def popularity_30d(self) -> np.ndarray:
        return self.popularity["purchases_30d"]

    def share(self, country: str | None) -> np.ndarray:
        s = self.country_share.get(country or "")
        return s if s is not None else np.zeros(len(self.popularity_30d), np.float32)

    def top(self, what: str, n: int) -> np.ndarray:
        """The `n` best-selling products of the region ("region") or of a country; cached per list."""
        cache = self.__dict__.setdefault("_orders", {})
        if what not in cache:
            if what == "region":
                score = self.popularity_7d + self.popularity_30d / 4
            else:
                score = self.share(what)
            order = np.argsort(-score, kind="stable")
            cache[what] = order[score[order] > 0]
        return cache[what][:n]

    def with_popularity(self, popularity: dict[str, np.ndarray]) -> Context:
        """The same snapshot with fresh popularity (the service reads it from the online store)."""
        return Context(self.copurchase, self.similar, popularity, self.country_share, self.days_on_sale, self.maison, self.log_price)


@dataclass
class Clients:
    """What the stage knows about each client: read from the query features (offline and online alike)."""

    history: list[np.ndarray]  # product indices of the last purchases, oldest first
    purchases_365d: np.ndarray
    days_since_purchase: np.ndarray
    country: np.ndarray
    recent: list[np.ndarray] | None = None  # the last products viewed, wished for or bought, oldest first

    @staticmethod
    def from_features(cols: dict, product_index: dict[str, int], as_of_s: float) -> Clients:
        """`cols`: purchased_products, purchases_365d, last_purchase_at, country, and recent_products
        where the model reads it (sequences)."""
        def indices(lists) -> list[np.ndarray]:
            return [np.array([product_index[p] for p in (b if b is not None else []) if p in product_index], np.int64) for b in lists]

        history = indices(cols.get("purchased_products") or [])
        n = len(history)
        last = [_seconds(v) for v in cols.get("last_purchase_at", [None] * n)]
        return Clients(
            history=history,
            purchases_365d=np.array([_number(v) for v in cols.get("purchases_365d", [None] * n)], np.float32),
            days_since_purchase=np.array([(as_of_s - t) / 86400 if t is not None else 3650.0 for t in last], np.float32),
            country=np.array([v if isinstance(v, str) else "" for v in cols.get("country", [None] * n)], dtype=object),
            recent=indices(cols["recent_products"]) if "recent_products" in cols else None,
        )

    def take(self, rows: np.ndarray) -> Clients:
        """The clients at `rows`, in that order."""
        pick = lambda lists: [lists[i] for i in rows] if lists is not None else None  # noqa: E731
        return Clients(pick(self.history), self.purchases_365d[rows], self.days_since_purchase[rows], self.country[rows], pick(self.recent))


def _number(v) -> float:
    try:
        return float(v) if v is not None and not pd.isna(v) else 0.0
    except (TypeError, ValueError):
        return 0.0


def _seconds(v) -> float | None:
    if v is None:
        return None
    try:
        if pd.isna(v):
            return None
    except (TypeError, ValueError):
        pass
    if isinstance(v, (int, float, np.integer, np.floating)):
        return float(v)
    return pd.Timestamp(v).timestamp()
