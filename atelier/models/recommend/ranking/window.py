"""The ranking stage's window: what it knew at a moment, read through the feature store, and what
its clients bought after. The stage learns from several such windows, each a cut-off and the
label weeks after it; the validation weeks' window chooses it and the test weeks' measures it.

The product snapshot (`Context`) is fitted on the purchases before the moment; the clients'
features are read as of it (`features_as_of`), as the service reads them online.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from atelier.context import RegionContext
from atelier.models.recommend import baselines as bl
from atelier.models.recommend.copurchase import CoPurchase
from atelier.models.recommend.dataset import RegionData, features_as_of
from atelier.models.recommend.ranking.context import POPULARITY, Clients, Context


@dataclass
class RankingWindow:
    """One window of the ranking stage: what it knew at `start`, and what clients bought until `end`."""

    start: pd.Timestamp
    end: pd.Timestamp
    context: object  # ranking.Context as of `start`
    clients: object  # Clients as of `start`
    client_ids: np.ndarray
    truth: list[np.ndarray]
    bought_before: list[np.ndarray]
    warm: np.ndarray  # bool: the store held the client at `start` (the others get popularity)

    def warm_only(self) -> tuple[Clients, list[np.ndarray], list[np.ndarray]]:
        """(clients, truth, bought before) of the warm clients: what the ranker learns from."""
        keep = np.flatnonzero(self.warm)
        return self.clients.take(keep), [self.truth[i] for i in keep], [self.bought_before[i] for i in keep]


def _log_price(products: pd.DataFrame) -> np.ndarray:
    """Each product's log price, NaN where the catalog has no positive price (or no price column)."""
    if "price" not in products:
        return np.full(len(products), np.nan, np.float32)
    price = pd.to_numeric(products["price"], errors="coerce").to_numpy(np.float64)
    return np.where(price > 0, np.log(np.where(price > 0, price, 1.0)), np.nan).astype(np.float32)


def ranking_window(
    ctx: RegionContext, data: RegionData, start: pd.Timestamp, end: pd.Timestamp, lam: float | None,
    *, client_ids: np.ndarray | None = None, most: int | None = None, seed: int = 7,
) -> RankingWindow:
    """The ranking stage's inputs as of `start` (features from the store, co-purchase fitted on the
    purchases before `start`) for the clients who bought in [start, end), or for `client_ids`.

    `most`: at most that many of the buyers, drawn at random with `seed` (in id order), before any
    of their features are read. The ranker's training lists are a sample: a window of a large
    region holds tens of thousands of buyers, each list some 500 candidates of 23 features."""
    purchases = data.purchases
    history = bl.History.before(purchases, start, len(data.products))
    pop = ctx.historical_features(pd.DataFrame({"product_id": data.products["product_id"], "event_timestamp": start}), [f"product_popularity:{p}" for p in POPULARITY])
    pop = pop.set_index("product_id").reindex(data.products["product_id"])
    first_sale = np.full(len(data.products), np.iinfo(np.int64).max)
    np.minimum.at(first_sale, history.product, history.timestamp)
    days_on_sale = np.where(first_sale < np.iinfo(np.int64).max, (pd.Timestamp(start).value // 1000 - first_sale) / 86_400e6, 0.0)
    shares = {country: counts / counts.sum() for country, counts in bl.country_counts(history).items()}  # countries with recent purchases
    context = Context(
        copurchase=CoPurchase.fit(history, lam),
        similar=CoPurchase.fit(history, None),
        popularity={p: pop[p].fillna(0).to_numpy(np.float32) for p in POPULARITY},
        country_share=shares,
        days_on_sale=days_on_sale.astype(np.float32),
        maison=pd.factorize(data.products["maison"])[0].astype(np.int32),
        log_price=_log_price(data.products),
    )
    named = purchases[purchases["client_id"].notna()]
    future = named[(named["event_timestamp"] >= start) & (named["event_timestamp"] < end)]
    if client_ids is None:
        client_ids = np.array(sorted(future["client_id"].unique()), dtype=object)
        if most is not None and len(client_ids) > most:
            client_ids = np.sort(np.random.default_rng(seed).choice(client_ids, most, replace=False))
    truth = {c: np.unique(g.to_numpy()) for c, g in future.groupby("client_id")["product"]}
    before = named[named["event_timestamp"] < start]
    bought = {c: np.unique(g.to_numpy()) for c, g in before.groupby("client_id")["product"]}
    empty = np.zeros(0, np.int64)
    if len(client_ids):
        cols = ["client_activity:purchased_products", "client_activity:recent_products", "client_activity:purchases_365d", "client_activity:last_purchase_at", "client_profile:country"]
        raw = features_as_of(ctx, client_ids, start, cols).reindex(client_ids)
        index = {p: i for i, p in enumerate(data.products["product_id"])}
        clients = Clients.from_features({c: raw[c].tolist() for c in raw.columns}, index, start.timestamp())
        warm = raw["purchases_365d"].notna().to_numpy()
    else:
        clients = Clients([], np.zeros(0, np.float32), np.zeros(0, np.float32), np.zeros(0, object))
        warm = np.zeros(0, bool)
    return RankingWindow(start, end, context, clients, client_ids, [truth.get(c, empty) for c in client_ids], [bought.get(c, empty) for c in client_ids], warm)
