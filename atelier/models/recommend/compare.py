"""The model beside every baseline, on one evaluation window: the table `atelier train` reports.

`Contenders` scores the window's clients with each recommender: the two-tower, recent popularity
in the region and in the client's country, item-kNN, EASE, and buy-again when already-bought
products may be recommended. Every score matrix is ranked by the same `top_k`, with the same
exclusions, and measured by the same `group_metrics`: warm, cold and all clients.

Choices (EASE's λ, the two-tower's epochs) are made on the validation window with `choose_lambda`
and the callbacks in `two_tower`; the test window is scored once, with those choices fixed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import cached_property

import numpy as np

from atelier.models.recommend import baselines as bl
from atelier.models.recommend.dataset import RegionData
from atelier.models.recommend.evaluate import RowScores, group_metrics, top_k

LAMBDAS = (10.0, 50.0, 200.0, 500.0, 1000.0, 3000.0)
SELECT_ON = "recall@10"  # the figure choices are made on (all clients of the validation window)
MODEL = "two-tower"
RANKED = "ranked"  # candidates from co-purchase, popularity and the two-tower, ordered by the ranking model (models/recommend/ranking/)


class Contenders:
    """The window's clients scored by each recommender, a block of clients at a time (`RowScores`):
    no clients x products matrix is held, neither scores nor the purchase matrix they come from."""

    def __init__(self, data: RegionData, exclude_purchased: bool):
        self.data = data
        self.history = bl.History.before(data.purchases, _cutoff(data), len(data.products))
        self.rows = self.history.rows_of(data.eval.client_ids)
        self.popularity = bl.recent_popularity(self.history)
        self.exclude = data.eval.bought_before if exclude_purchased else None
        self.exclude_purchased = exclude_purchased
        self._gram: np.ndarray | None = None

    @cached_property
    def fallback(self) -> bl.Fallback:
        """What the service answers the window's clients it does not hold, as of the cut-off: the
        store's popularity, or the client's country's blend (built once, from this history)."""
        return bl.Fallback(self.data.popularity, bl.country_counts(self.history))

    def x(self, start: int, stop: int) -> np.ndarray:
        """The binary purchase matrix of clients start..stop-1 (before the cut-off)."""
        return self.history.matrix(self.rows[start:stop])

    @property
    def gram(self) -> np.ndarray:
        """XᵀX, shared by EASE's λ search and item-kNN (only on catalogs up to EASE_MAX_PRODUCTS)."""
        if self._gram is None:
            self._gram = self.history.gram()
        return self._gram

    def release(self) -> None:
        """Let XᵀX go (computed again if asked for): the ranking stage's tower builds a training set
        of its own after the baselines are scored (0.19 GiB for eu of the 52M-event world)."""
        self._gram = None

    def scores(self, block: Callable[[int, int], np.ndarray]) -> RowScores:
        """A recommender's scores for the window's clients, `block(start, stop)` at a time."""
        return RowScores((len(self.rows), self.history.products), block)

    def ease(self, lam: float) -> RowScores:
        model = bl.Ease(self.history, lam, gram=self.gram)
        return self.scores(lambda a, b: bl.with_prior(model.scores(self.x(a, b)), self.popularity))

    def baselines(self, lam: float | None) -> Iterator[tuple[str, Callable[[], np.ndarray | RowScores]]]:
        n = len(self.rows)
        yield "recent popularity", lambda: bl.popularity_scores(self.history, n)  # one row, broadcast
        yield "popularity in country", self._country
        if self.history.products <= bl.EASE_MAX_PRODUCTS:  # both keep a products x products matrix
            yield "item-kNN", self._knn
        if lam is not None:
            yield f"EASE (λ={lam:g})", lambda: self.ease(lam)
        if not self.exclude_purchased:
            yield "buy again", lambda: self.scores(lambda a, b: bl.with_prior(bl.buy_again_scores(self.history, self.rows[a:b]), self.popularity))

    def _country(self) -> RowScores:
        country = bl.CountryPopularity(self.history)
        return self.scores(lambda a, b: country.scores(self.data.eval.country[a:b]))

    def _knn(self) -> RowScores:
        knn = bl.ItemKNN(self.history, gram=self.gram)
        return self.scores(lambda a, b: bl.with_prior(knn.scores(self.x(a, b)), self.popularity))

    def measure(self, scores: np.ndarray | RowScores) -> dict:
        ranked = top_k(scores, 100, self.exclude) if len(scores) else np.zeros((0, 100), int)
        return group_metrics(ranked, self.data.eval.truth, self.data.eval.warm, len(self.data.products))


def choose_lambda(contenders: Contenders) -> tuple[float | None, dict[str, float]]:
    """EASE's λ with the best validation recall@10 (None when the catalog is too large for EASE)."""
    if len(contenders.data.products) > bl.EASE_MAX_PRODUCTS or not len(contenders.rows):
        return None, {}
    tried = {f"{lam:g}": contenders.measure(contenders.ease(lam))["all"].get(SELECT_ON, 0.0) for lam in LAMBDAS}
    best = max(tried, key=tried.get)
    return float(best), tried


def table(contenders: Contenders, model_scores: np.ndarray | RowScores, lam: float | None) -> dict[str, dict]:
    """Metrics per recommender (the model first), each split into all / warm / cold clients."""
    out = {MODEL: contenders.measure(model_scores)}
    for name, scores in contenders.baselines(lam):
        out[name] = contenders.measure(scores())
    return out


def choose_served(validation: dict[str, dict], forced: str = "auto") -> str:
    """What /recommend will answer with: the two-tower alone or the ranking stage, whichever does
    best on the validation weeks (all clients), unless the configuration forces one."""
    if RANKED not in validation or forced == "two-tower":
        return MODEL
    if forced == "ranked":
        return RANKED
    score = lambda name: validation[name]["all"].get(SELECT_ON, 0.0)  # noqa: E731
    return RANKED if score(RANKED) > score(MODEL) else MODEL


def best_baseline(results: dict[str, dict], group: str, metric: str) -> tuple[str, float]:
    pairs = [(name, m[group].get(metric, 0.0)) for name, m in results.items() if name not in (MODEL, RANKED)]
    return max(pairs, key=lambda p: p[1]) if pairs else ("", 0.0)


def _cutoff(data: RegionData):
    import pandas as pd

    return pd.Timestamp(data.window["cutoff"])
