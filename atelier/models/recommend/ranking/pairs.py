"""The features of each (client, candidate) pair, one row of `FEATURES` per pair, computed from
what the online store holds: co-purchase scores, the product's popularity and trend, its share in
the client's country, the client's activity, the two-tower's opinion, and what the client's own
lists say about the candidate (loyalty to its maison, its price against theirs, how often it was
just seen)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from atelier.models.recommend.ranking.context import POPULARITY, Context
from atelier.models.recommend.ranking.sources import Prepared
from atelier.models.recommend.ranking.tower import FROM_TOWER, Retrieved

FEATURES = (
    "copurchase", "copurchase_recent", "copurchase_last", "similar", "similar_last",
    "popularity_7d", "popularity_30d", "popularity_90d", "popularity_365d", "trend_7_30", "trend_30_365",
    "country_share", "days_on_sale", "history_length", "purchases_365d", "days_since_purchase",
    "tower_z", "tower_rank",
    "maison_share", "maison_share_recent", "price_gap", "price_gap_recent", "recently_seen",
)
# What stages exported before the tower's features were added score (`Stage.columns`).
FEATURES_V1 = FEATURES[:16]


def features(ctx: Context, prep: Prepared, cands: list[np.ndarray], tower: Retrieved | None = None) -> np.ndarray:
    """One row of FEATURES per (client, candidate), clients in order, candidates in the given order.

    Without `tower` the tower's features read as "far from the client" (z 0, last place)."""
    products = len(ctx.popularity_30d)
    clients = prep.clients
    rows = np.concatenate([np.full(len(c), u) for u, c in enumerate(cands)]) if cands else np.zeros(0, np.int64)
    items = np.concatenate(cands).astype(np.int64) if cands else np.zeros(0, np.int64)
    if not len(items):
        return np.zeros((0, len(FEATURES)), np.float32)
    co, recent, last = prep.copurchase.lookup(rows, items, products)
    sim, _, sim_last = prep.similar.lookup(rows, items, products)
    share = np.zeros(len(items))
    for country in pd.unique(clients.country):
        mine = clients.country[rows] == country
        share[mine] = ctx.share(country)[items[mine]]
    p7, p30, p90, p365 = (ctx.popularity[name][items] for name in POPULARITY)
    lengths = np.array([len(h) for h in clients.history], np.float32)
    tower_z, place = np.zeros(len(items), np.float32), np.full(len(items), FROM_TOWER, np.float32)
    if tower is not None:
        tower_z = tower.view.z(tower.queries, rows, items)
        listed = tower.lists
        if sum(len(t) for t in listed):  # each candidate's place in its client's list
            flat, owner, _ = _owners(listed)
            at = np.concatenate([np.arange(len(t)) for t in listed])
            key = owner * products + flat
            order = np.argsort(key, kind="stable")
            place = _keyed(key[order], at[order], rows.astype(np.int64) * products + items, FROM_TOWER)
    seen = clients.recent
    f = np.stack([np.asarray(column, np.float32) for column in (  # float32 column by column: stacked as float64, a block's pairs took twice the room
        co, recent, last, sim, sim_last,
        np.log1p(p7), np.log1p(p30), np.log1p(p90), np.log1p(p365),
        np.log((p7 + 1) / (p30 / 4 + 1)), np.log((p30 + 1) / (p365 / 12 + 1)),
        np.log1p(1000 * share), np.log1p(ctx.days_on_sale[items]),
        np.log1p(lengths[rows]), np.log1p(np.maximum(clients.purchases_365d[rows], 0)),
        np.log1p(np.clip(clients.days_since_purchase[rows], 0, 3650)),
        tower_z, np.log1p(place),
        _maison_share(ctx.maison, clients.history, rows, items), _maison_share(ctx.maison, seen, rows, items),
        _price_gap(ctx.log_price, clients.history, rows, items), _price_gap(ctx.log_price, seen, rows, items),
        _times_listed(seen, rows, items, products),
    )], axis=1)
    return np.nan_to_num(f, copy=False)


def _owners(lists: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(every listed product, the row of its list, each list's length)."""
    lengths = np.array([len(x) for x in lists], np.int64)
    flat = np.concatenate(lists).astype(np.int64) if lengths.sum() else np.zeros(0, np.int64)
    return flat, np.repeat(np.arange(len(lists)), lengths), lengths


def _maison_share(codes: np.ndarray | None, lists: list[np.ndarray] | None, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Per pair, the share of the client's listed products that are of the candidate's maison: the
    client's loyalty, which decides where its sessions happen (0 without a list or a maison)."""
    if codes is None or lists is None or not len(codes) or codes.max() < 0:
        return np.zeros(len(items), np.float32)
    flat, owner, lengths = _owners(lists)
    counts = np.zeros((len(lists), int(codes.max()) + 1), np.float32)
    known = codes[flat] >= 0
    np.add.at(counts, (owner[known], codes[flat][known]), 1.0)
    cand = codes[items]
    return np.where(cand >= 0, counts[rows, np.maximum(cand, 0)] / np.maximum(lengths[rows], 1), 0.0).astype(np.float32)


def _price_gap(log_price: np.ndarray | None, lists: list[np.ndarray] | None, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Per pair, the candidate's log price less the mean log price of the client's listed products:
    how far it sits from what the client buys (0 where either is unknown)."""
    if log_price is None or lists is None:
        return np.zeros(len(items), np.float32)
    flat, owner, _ = _owners(lists)
    known = ~np.isnan(log_price[flat])
    total = np.bincount(owner[known], log_price[flat][known], len(lists))
    count = np.bincount(owner[known], minlength=len(lists))
    mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    gap = log_price[items] - mean[rows]
    return np.nan_to_num(gap).astype(np.float32)


def _times_listed(lists: list[np.ndarray] | None, rows: np.ndarray, items: np.ndarray, products: int) -> np.ndarray:
    """Per pair, how often the candidate is in the client's list (a product viewed again and again)."""
    if lists is None:
        return np.zeros(len(items), np.float32)
    flat, owner, _ = _owners(lists)
    keys, counts = np.unique(owner * products + flat, return_counts=True)
    return _keyed(keys, counts, rows.astype(np.int64) * products + items, 0)


def _keyed(keys: np.ndarray, values: np.ndarray, want: np.ndarray, default: float) -> np.ndarray:
    """`values` where the sorted (client row, product) `keys` equal `want`, `default` elsewhere."""
    if not len(keys):
        return np.full(len(want), default, np.float32)
    pos = np.minimum(np.searchsorted(keys, want), len(keys) - 1)
    return np.where(keys[pos] == want, values[pos], default).astype(np.float32)
