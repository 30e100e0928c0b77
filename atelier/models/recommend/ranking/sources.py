"""The ranking stage's candidates: the union, per client, of several sources.

The co-purchase neighbours of the client's purchases in two tables (EASE's weights and co-purchase
cosine: two views of "bought together" that disagree usefully), the region's and the client's
country's recent best-sellers, the two-tower's nearest products and the products the client last
looked at. Each source over-fetches by the client's exclusions, then leaves them out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from atelier.models.recommend.copurchase import CoPurchase
from atelier.models.recommend.ranking.context import Clients, Context
from atelier.models.recommend.ranking.tower import Retrieved, without

FROM_COPURCHASE, FROM_SIMILAR, FROM_POPULARITY, FROM_COUNTRY = 150, 50, 50, 50
FROM_RECENT = 20  # the client's last products seen (recent_products holds 20)
RECENT_DECAY = 10.0  # a purchase 10 places back counts half in copurchase_recent


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
            without(by_co.get(u, empty), gone, FROM_COPURCHASE),
            without(by_sim.get(u, empty), gone, FROM_SIMILAR),
            without(region, gone, FROM_POPULARITY),
            without(ctx.top(prep.clients.country[u], FROM_COUNTRY + len(gone)), gone, FROM_COUNTRY),
        ]
        if tower is not None:
            picks.append(tower.lists[u])
        if prep.clients.recent is not None:
            picks.append(without(prep.clients.recent[u][::-1], gone, FROM_RECENT))
        out.append(np.unique(np.concatenate(picks)).astype(np.int64))
    return out
