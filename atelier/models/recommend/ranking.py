"""The ranking stage: candidates from several sources, ordered by a learned TFRS ranking model.

Retrieval alone ranks by one signal. On real retail data the best single signals are co-purchase
(what is bought with what the client bought) and recent popularity, and neither wins everywhere:
the strongest teams gather candidates from several sources and learn how to order them. Here:

* candidates: the co-purchase neighbours of the client's purchases (`CoPurchase`), the region's
  and the client's country's recent best-sellers, the two-tower's nearest products, and the
  products the client last looked at;
* features of each (client, candidate) pair, all computable from what the online store holds
  (the client's last purchases and last products seen, activity counts and country; the
  product's popularity): co-purchase score (plain, recency-weighted, strongest link to the last
  purchases), the product's popularity over 7 and 30 days and its trend, its share of recent
  sales in the client's country, the client's history length, yearly purchases and days since
  the last, the two-tower's opinion (`Retrieved`: its score as a z-score over the client's whole
  catalog and the candidate's place in the tower's list), and what the client's own lists say
  about the candidate: the share of them in its maison (loyalty decides where a client shops),
  its price against theirs, and how often the client just saw it. The last products seen
  arrive in real time (`POST /events`), so a client's views move the ranking at once;
* a small network scores each pair; trained listwise (softmax over a client's candidates, the
  products bought in the label weeks as targets) with `tfrs.tasks.Ranking`.

Clients without history are not ranked: they get recent popularity, which is what they buy.
Training and serving build features with the same functions (`Clients`, `Context`, `features`),
so an online answer is the offline answer for the same feature values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import tensorflow as tf
import tensorflow_recommenders as tfrs
import tf_keras as keras

from atelier.memory import give_back
from atelier.models.recommend.copurchase import CoPurchase
from atelier.models.signatures import Signature
from atelier.models.streams import weakly_streamed

FEATURES = (
    "copurchase", "copurchase_recent", "copurchase_last", "similar", "similar_last",
    "popularity_7d", "popularity_30d", "popularity_90d", "popularity_365d", "trend_7_30", "trend_30_365",
    "country_share", "days_on_sale", "history_length", "purchases_365d", "days_since_purchase",
    "tower_z", "tower_rank",
    "maison_share", "maison_share_recent", "price_gap", "price_gap_recent", "recently_seen",
)
# What stages exported before the tower's features were added score (`Stage.columns`).
FEATURES_V1 = FEATURES[:16]
POPULARITY = ("purchases_7d", "purchases_30d", "purchases_90d", "purchases_365d")  # product_popularity features
FROM_COPURCHASE, FROM_SIMILAR, FROM_POPULARITY, FROM_COUNTRY, FROM_TOWER = 150, 50, 50, 50, 200
FROM_RECENT = 20  # the client's last products seen (recent_products holds 20)
RECENT_DECAY = 10.0  # a purchase 10 places back counts half in copurchase_recent


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
        return Retrieved(view, queries, [_without(t, exclude[u] if exclude is not None else empty, FROM_TOWER) for u, t in enumerate(lists)])

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


@dataclass
class Links:
    """Sparse (client, product) link scores from one neighbour table, sorted by (client, product).

    `total` sums the weights from every purchase, `recent` weighs each purchase by its recency
    (halving every RECENT_DECAY places back), `last` is the strongest link to a last purchase.
    """

    key: np.ndarray  # client row * products + product, sorted
    total: np.ndarray
    recent: np.ndarray
    last: np.ndarray

    def lookup(self, rows: np.ndarray, items: np.ndarray, products: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        want = rows.astype(np.int64) * products + items
        pos = np.minimum(np.searchsorted(self.key, want), max(len(self.key) - 1, 0))
        hit = (self.key[pos] == want) if len(self.key) else np.zeros(len(want), bool)
        pick = lambda v: np.where(hit, v[pos], 0.0) if len(self.key) else np.zeros(len(want))  # noqa: E731
        return pick(self.total), pick(self.recent), pick(self.last)


def links(table: CoPurchase, history: list[np.ndarray], last: int = 5, cells: int = 4_000_000) -> Links:
    """Aggregate the neighbours of every client's purchases, sparsely (no clients x products matrix
    is kept; clients are taken in chunks, so that a chunk's keys stay below `cells`)."""
    products, width = table.neighbours.shape
    chunk = max(1, cells // max(products, 1))
    parts = [_links(table, history[s : s + chunk], last, s) for s in range(0, len(history), chunk)]
    if not parts:
        empty = np.zeros(0)
        return Links(np.zeros(0, np.int64), empty, empty, empty)
    return Links(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("key", "total", "recent", "last")))


def _links(table: CoPurchase, history: list[np.ndarray], last: int, first_row: int) -> Links:
    products, width = table.neighbours.shape
    lengths = np.array([len(h) for h in history], np.int64)
    if not lengths.sum():
        empty = np.zeros(0)
        return Links(np.zeros(0, np.int64), empty, empty, empty)
    items = np.concatenate([np.asarray(h, np.int64) for h in history])
    row = np.repeat(np.arange(len(history)), lengths)
    back = np.concatenate([np.arange(n)[::-1] for n in lengths])  # 0 for each client's newest purchase
    nb, w = table.neighbours[items], table.weights[items]
    ok = nb >= 0
    key = row[:, None] * products + nb
    key, w, back = key[ok], w[ok].astype(np.float64), np.broadcast_to(back[:, None], nb.shape)[ok]
    # Summed over the (client, product) keys that occur, not over a dense clients x products
    # buffer: at 100k products a serving batch of 32 clients spent 18 ms per table there, 2.4 now.
    keys, at = np.unique(key, return_inverse=True)
    total = np.bincount(at, w, len(keys))
    recent = np.bincount(at, w * 0.5 ** (back / RECENT_DECAY), len(keys))
    latest = np.zeros(len(keys))
    near = back < last
    np.maximum.at(latest, at[near], w[near])
    keep = total != 0
    return Links(keys[keep] + first_row * products, total[keep], recent[keep], latest[keep])


@dataclass
class Prepared:
    """Clients with their link scores in both neighbour tables: computed once per batch."""

    clients: Clients
    copurchase: Links
    similar: Links


def prepare(ctx: Context, clients: Clients) -> Prepared:
    return Prepared(clients, links(ctx.copurchase, clients.history), links(ctx.similar, clients.history))


def _top_links(l: Links, score: np.ndarray, products: int, n: int) -> dict[int, np.ndarray]:
    """Per client row, the products of its `n` best-scored links (score > 0)."""
    rows, items = l.key // products, l.key % products
    order = np.lexsort((-score, rows))
    rows, items, score = rows[order], items[order], score[order]
    first = np.searchsorted(rows, rows, side="left")
    keep = (np.arange(len(rows)) - first < n) & (score > 0)
    out: dict[int, np.ndarray] = {}
    for r, its in zip(*_split(rows[keep], items[keep])):
        out[r] = its
    return out


def _split(rows: np.ndarray, values: np.ndarray):
    if not len(rows):
        return [], []
    cuts = np.flatnonzero(np.diff(rows)) + 1
    return [int(r[0]) for r in np.split(rows, cuts)], np.split(values, cuts)


def candidates(ctx: Context, prep: Prepared, exclude: list[np.ndarray] | None, tower: Retrieved | None = None) -> list[np.ndarray]:
    """Per client, the union of every source's candidates (already-bought products left out)."""
    products = len(ctx.popularity_30d)
    n = len(prep.clients.history)
    co, sim = prep.copurchase, prep.similar
    # Over-fetch each source by the client's exclusions, then leave those out.
    slack = max((len(e) for e in exclude), default=0) if exclude is not None else 0
    by_co = _top_links(co, co.total + co.recent, products, FROM_COPURCHASE + slack)
    by_sim = _top_links(sim, sim.total, products, FROM_SIMILAR + slack)
    region = ctx.top("region", FROM_POPULARITY + slack)
    empty = np.zeros(0, np.int64)
    out = []
    for u in range(n):
        gone = exclude[u] if exclude is not None else empty
        picks = [
            _without(by_co.get(u, empty), gone, FROM_COPURCHASE),
            _without(by_sim.get(u, empty), gone, FROM_SIMILAR),
            _without(region, gone, FROM_POPULARITY),
            _without(ctx.top(prep.clients.country[u], FROM_COUNTRY + len(gone)), gone, FROM_COUNTRY),
        ]
        if tower is not None:
            picks.append(tower.lists[u])
        if prep.clients.recent is not None:
            picks.append(_without(prep.clients.recent[u][::-1], gone, FROM_RECENT))
        out.append(np.unique(np.concatenate(picks)).astype(np.int64))
    return out


def _without(items: np.ndarray, gone: np.ndarray, n: int) -> np.ndarray:
    items = np.asarray(items, np.int64)
    return (items[~np.isin(items, gone)] if len(gone) else items)[:n]


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


class Scorer(keras.Model):
    """Features of one (client, candidate) pair -> a score; normalization is part of the model."""

    def __init__(self, hidden: tuple[int, ...] = (64, 32), seed: int = 7):
        super().__init__()
        init = lambda i: keras.initializers.GlorotUniform(seed=seed + i)  # noqa: E731
        self.norm = keras.layers.Normalization(axis=-1)
        self.dense = [keras.layers.Dense(h, activation="relu", kernel_initializer=init(i)) for i, h in enumerate(hidden)]
        self.out = keras.layers.Dense(1, kernel_initializer=init(len(hidden)))

    def call(self, x):
        x = self.norm(x)
        for layer in self.dense:
            x = layer(x)
        return tf.squeeze(self.out(x), -1)


class ListwiseRanker(tfrs.Model):
    """Softmax over each client's padded candidate list; padding never wins."""

    def __init__(self, scorer: Scorer):
        super().__init__()
        self.scorer = scorer
        self.task = tfrs.tasks.Ranking(loss=keras.losses.CategoricalCrossentropy(from_logits=True))

    def compute_loss(self, inputs, training=False):
        scores = self.scorer(inputs["features"], training=training)
        scores = tf.where(inputs["mask"], scores, -1e9)
        return self.task(labels=inputs["labels"], predictions=scores)


@dataclass
class Lists:
    """Training lists of one window: features, labels and validity, padded per client."""

    features: np.ndarray  # [clients, length, FEATURES]
    labels: np.ndarray  # [clients, length], each row sums to 1
    mask: np.ndarray  # [clients, length]

    @staticmethod
    def of(f: np.ndarray, cands: list[np.ndarray], truth: list[np.ndarray]) -> Lists:
        """Only the lists with a purchase are padded (one without teaches nothing): padding every
        client's list first held the features of lists that were then dropped."""
        hits = [np.isin(c, t) for c, t in zip(cands, truth)]
        keep = [u for u, h in enumerate(hits) if h.any()]
        starts = np.concatenate([[0], np.cumsum([len(c) for c in cands])])
        length = max((len(cands[u]) for u in keep), default=1)
        feats = np.zeros((len(keep), length, f.shape[1]), np.float32)
        labels = np.zeros((len(keep), length), np.float32)
        mask = np.zeros((len(keep), length), bool)
        for row, u in enumerate(keep):
            n = len(cands[u])
            feats[row, :n] = f[starts[u] : starts[u] + n]
            labels[row, :n] = hits[u]
            mask[row, :n] = True
        return Lists(feats, labels / np.maximum(labels.sum(1, keepdims=True), 1.0), mask)

    @staticmethod
    def concat(parts: list[Lists]) -> Lists:
        """The lists of several blocks of clients, in order, padded to the longest."""
        length = max((p.labels.shape[1] for p in parts if len(p.labels)), default=1)
        width = next((p.features.shape[2] for p in parts), len(FEATURES))
        pad = lambda x: np.pad(x, [(0, 0), (0, length - x.shape[1])] + [(0, 0)] * (x.ndim - 2))  # noqa: E731
        kept = [p for p in parts if len(p.labels)]
        if not kept:
            return Lists(np.zeros((0, 1, width), np.float32), np.zeros((0, 1), np.float32), np.zeros((0, 1), bool))
        return Lists(np.concatenate([pad(p.features) for p in kept]), np.concatenate([pad(p.labels) for p in kept]),
                     np.concatenate([pad(p.mask) for p in kept]))


# Clients whose candidate pairs are built and scored at once, in the training lists and in
# `ranked_scores`. A pair's features are some forty float arrays of one value per pair before they
# are stacked: for 2,048 clients of 5,000 products (a million pairs) numpy held 588 MiB at once,
# 244 MiB by 512 clients and 142 MiB by 256, which also took half the time (6.9 s against
# 13-15 s: the arrays stay in cache). A client's pairs depend on that client only.
LIST_BLOCK = 256


def _pair_blocks(ctx: Context, clients: Clients, exclude: list[np.ndarray] | None, tower: Retrieved | None,
                 block: int) -> Iterator[tuple[int, list[np.ndarray], np.ndarray]]:
    """(first client, each client's candidates, their pairs' features), `block` clients at a time:
    a client's candidates and features depend on that client only (see `LIST_BLOCK`)."""
    n = len(clients.history)
    for first in range(0, n, block):
        rows = np.arange(first, min(n, first + block))
        ex = exclude[first : first + block] if exclude is not None else None
        t = tower.take(rows) if tower is not None else None
        prep = prepare(ctx, clients.take(rows))
        cands = candidates(ctx, prep, ex, t)
        yield first, cands, features(ctx, prep, cands, t)


def training_lists(ctx: Context, clients: Clients, truth: list[np.ndarray], exclude: list[np.ndarray] | None,
                   tower: Retrieved | None, block: int = LIST_BLOCK) -> Lists:
    """One window's training lists, built `block` clients at a time: a whole window's pairs at once
    (eu of the 52M-event world: tens of thousands of clients with some 400 candidates each, 23
    features per pair) were gigabytes beside the lists kept."""
    return Lists.concat([Lists.of(f, cands, truth[first : first + len(cands)])
                         for first, cands, f in _pair_blocks(ctx, clients, exclude, tower, block)])


def fit(
    windows: list[Lists], epochs: int, *, seed: int = 7, batch: int = 64, learning_rate: float = 2e-3,
    validation: Callable[[Scorer], float] | None = None, progress: Callable[[int], None] | None = None,
) -> tuple[Scorer, dict]:
    """Train on the windows' lists; with `validation`, keep the epoch that scores best there."""
    keras.utils.set_random_seed(seed)
    scorer = Scorer(seed=seed)
    windows = _Windows(windows)  # held weakly by the normalization's pass (see `_pairs`)
    scorer.norm.adapt(_pairs(windows))
    model = ListwiseRanker(scorer)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate))
    scores, best, best_weights = [], -1.0, None
    for epoch in range(epochs):
        for i, w in enumerate(windows):
            # a copy of the window as tensors, let go before the next window's and before the validation's scoring
            model.fit(tf.data.Dataset.from_tensor_slices({"features": w.features, "labels": w.labels, "mask": w.mask})
                      .shuffle(len(w.labels), seed=seed + epoch * 31 + i).batch(batch), epochs=1, verbose=0)
        if progress:
            progress(1)
        if validation:
            give_back()  # what the fit freed (Keras's data handlers sit in cycles), under the validation's scoring: 0.57 -> 0.43 GiB over the lists of 0.17
            scores.append(float(validation(scorer)))
            if scores[-1] > best:
                best, best_weights = scores[-1], scorer.get_weights()
    if best_weights is not None:
        scorer.set_weights(best_weights)
    return scorer, {"validation": scores, "best_epochs": (int(np.argmax(scores)) + 1) if scores else epochs,
                    "lists": int(sum(len(w.labels) for w in windows))}


class _Windows(list):
    """A fit's windows, as `_pairs` streams them: a list TensorFlow can hold weakly."""


def _pairs(windows: _Windows, clients: int = 4096) -> tf.data.Dataset:
    """Every real (unpadded) pair of the windows, in order, in batches of 32, as the normalization
    adapts to them: the batches `adapt` makes of one array of them all, without that array (a copy
    of every window's features at once). The windows are held weakly (`atelier.models.streams`):
    strongly, every window's padded lists stayed under every later step (up to 8,192 lists a
    window, each padded to some 500 pairs of 23 features: up to 0.38 GiB a window at eu of the
    52M-event world's size). The caller holds `windows` while the dataset is read."""
    width = windows[0].features.shape[2] if windows else len(FEATURES)

    def chunks(windows: list[Lists]) -> Iterator[np.ndarray]:
        if not any(len(w.labels) for w in windows):
            yield np.zeros((1, width), np.float32)
        for w in windows:
            for s in range(0, len(w.labels), clients):
                yield w.features[s : s + clients][w.mask[s : s + clients]]

    return weakly_streamed(windows, chunks, tf.TensorSpec([None, width], tf.float32)).unbatch().batch(32)


SCORE_ROWS = 65_536  # pairs scored at once


def score(scorer, f: np.ndarray) -> np.ndarray:
    """Scores of feature rows, with an in-memory Scorer or an exported signature, `SCORE_ROWS` at
    a time: each layer's output for every pair of a block of 2,048 clients at once (a million
    pairs, 64 floats each) held 0.3-0.8 GiB beside the pairs, in each epoch's validation."""
    if not len(f):
        return np.zeros(0, np.float32)
    run = (lambda x: scorer(x).numpy()) if isinstance(scorer, Scorer) else (lambda x: scorer({"features": x})["score"].numpy())
    return np.concatenate([run(f[i : i + SCORE_ROWS]) for i in range(0, len(f), SCORE_ROWS)])


class ScorerModule(tf.Module):
    """The exported scorer: features [n, width] -> score [n]."""

    def __init__(self, scorer: Scorer, width: int = len(FEATURES)):
        super().__init__()
        self.scorer = scorer
        self.score = tf.function(lambda features: {"score": self.scorer(features)},
                                 input_signature=[tf.TensorSpec([None, width], tf.float32, name="features")])


def save(scorer: Scorer, path, width: int = len(FEATURES)) -> None:
    module = ScorerModule(scorer, width)
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.score.get_concrete_function()})


def load(path) -> Signature:
    return Signature(tf.saved_model.load(str(path)).signatures["serving_default"])


def ranked_scores(ctx: Context, clients: Clients, scorer, exclude: list[np.ndarray] | None, tower: Retrieved | None, fill: np.ndarray,
                  block: int = LIST_BLOCK) -> np.ndarray:
    """Clients x products scores: the ranker's order over each client's candidates, `fill`'s order
    after. The pairs are built and scored `block` clients at a time (see `LIST_BLOCK`)."""
    out = np.broadcast_to((fill - fill.max() - 1e6).astype(np.float32), (len(clients.history), len(fill))).copy()
    for first, cands, f in _pair_blocks(ctx, clients, exclude, tower, block):
        s = score(scorer, f)
        start = 0
        for u, c in enumerate(cands):
            out[first + u, c] = s[start : start + len(c)]
            start += len(c)
    return out


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


@dataclass
class Stage:
    """The exported ranking stage, as the service loads it."""

    scorer: object  # the SavedModel signature (models.signatures.Signature)
    context: Context
    features: tuple[str, ...] = FEATURES  # what the scorer was trained on

    @property
    def reads_recent(self) -> bool:
        """Whether the stage was trained with the client's last products seen (as features and as
        candidates): a stage exported before them is served exactly as it was evaluated."""
        return "recently_seen" in self.features


def save_stage(scorer: Scorer, context: Context, path, names: tuple[str, ...] = FEATURES) -> None:
    """Write the scorer (SavedModel, over the features `names`) and the context snapshot into `path`."""
    from pathlib import Path

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    save(scorer, path / "scorer", len(names))
    context.copurchase.save(path / "copurchase.npz")
    context.similar.save(path / "similar.npz")
    countries = sorted(context.country_share)
    shares = np.stack([context.country_share[c] for c in countries]) if countries else np.zeros((0, len(context.days_on_sale)), np.float32)
    extra = {k: v for k, v in (("maison", context.maison), ("log_price", context.log_price)) if v is not None}
    np.savez(path / "context.npz", features=np.array(names, dtype=str), countries=np.array(countries, dtype=str), shares=shares, days_on_sale=context.days_on_sale,
             **extra, **{f"popularity_{name}": context.popularity[name] for name in POPULARITY})


def load_stage(path) -> Stage:
    from pathlib import Path

    path = Path(path)
    z = np.load(path / "context.npz")
    context = Context(
        copurchase=CoPurchase.load(path / "copurchase.npz"),
        similar=CoPurchase.load(path / "similar.npz"),
        popularity={name: z[f"popularity_{name}"] for name in POPULARITY},
        country_share={str(c): z["shares"][i] for i, c in enumerate(z["countries"])},
        days_on_sale=z["days_on_sale"],
        maison=z["maison"] if "maison" in z else None,
        log_price=z["log_price"] if "log_price" in z else None,
    )
    names = tuple(str(n) for n in z["features"]) if "features" in z else FEATURES_V1
    scorer = load(path / "scorer")
    return Stage(scorer if names == FEATURES else _Columns(scorer, [FEATURES.index(n) for n in names]), context, names)


@dataclass
class _Columns:
    """A scorer exported with an earlier feature list: it is given the columns it was trained on,
    so a model in the store keeps serving after FEATURES grows."""

    scorer: object
    columns: list[int]

    def __call__(self, inputs: dict) -> dict:
        return self.scorer({"features": np.ascontiguousarray(inputs["features"][:, self.columns])})
