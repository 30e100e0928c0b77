"""The bars a forecast must clear, computed in the same run on the same cells.

* seasonal naive: the same week a year before the target (52 weeks back); where the series has
  no year of history, its last week before the origin;
* moving average: the mean of the 8 weeks before the origin, for every horizon;
* LightGBM: a global gradient-boosted model on the same features and scale as the network, one
  booster per quantile (pinball objective), its number of rounds chosen on the validation origin
  (the model family that won the M5 competition, and so the bar to beat).
"""

from __future__ import annotations

import numpy as np

from atelier.models.forecast.features import CATEGORICAL, NUMERIC, YEAR, Examples
from atelier.models.forecast.metrics import QUANTILES
from atelier.models.forecast.panel import Panel

MOVING_WEEKS = 8


def seasonal_naive(panel: Panel, ex: Examples) -> np.ndarray:
    """Units forecast for each example's target week."""
    target = ex.origin + ex.horizon - 1
    back = target - YEAR
    first = panel.first_sale()[ex.series]
    has_year = (back >= 0) & (back >= first) & (back < ex.origin)
    last = panel.units[ex.series, ex.origin - 1]
    return np.where(has_year, panel.units[ex.series, np.clip(back, 0, None)], last).astype(np.float64)


def moving_average(panel: Panel, ex: Examples, weeks: int = MOVING_WEEKS) -> np.ndarray:
    c = panel.cum("units")
    lo = np.maximum(ex.origin - weeks, 0)
    return (c[ex.series, ex.origin] - c[ex.series, lo]) / weeks


def _matrix(ex: Examples) -> np.ndarray:
    return np.concatenate([ex.numeric, ex.categorical.astype(np.float32)], axis=1)


class LightGBM:
    """Three quantile boosters over the network's features, on each series' scale."""

    params = {"learning_rate": 0.05, "num_leaves": 63, "min_data_in_leaf": 50, "feature_fraction": 0.8,
              "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 1.0, "verbose": -1, "num_threads": 2}

    def __init__(self, seed: int = 0, rounds: int | None = None, max_rounds: int = 600):
        self.seed, self.rounds, self.max_rounds = seed, rounds, max_rounds
        self.boosters: list = []

    def fit(self, train: Examples, validation: Examples | None = None) -> "LightGBM":
        """Fit; with `validation`, stop each booster where its validation loss stops falling and keep that count."""
        import lightgbm as lgb

        names = list(NUMERIC) + list(CATEGORICAL)
        weight = train.scale / train.scale.mean()
        data = lgb.Dataset(_matrix(train), train.target / train.scale, weight=weight, feature_name=names,
                           categorical_feature=list(CATEGORICAL), free_raw_data=False)
        self.boosters, chosen = [], []
        for i, q in enumerate(QUANTILES):
            params = {**self.params, "objective": "quantile", "alpha": q, "seed": self.seed + i}
            if validation is not None:
                valid = lgb.Dataset(_matrix(validation), validation.target / validation.scale,
                                    weight=validation.scale / validation.scale.mean(), reference=data)
                b = lgb.train(params, data, self.max_rounds, valid_sets=[valid],
                              callbacks=[lgb.early_stopping(30, verbose=False)])
                chosen.append(b.best_iteration or self.max_rounds)
            else:
                b = lgb.train(params, data, (self.rounds or [self.max_rounds] * 3)[i])
            self.boosters.append(b)
        if validation is not None:
            self.rounds = chosen
        return self

    def predict(self, ex: Examples) -> np.ndarray:
        """(N, 3) P10, P50, P90 in units, sorted so that P10 <= P50 <= P90."""
        x = _matrix(ex)
        out = np.stack([b.predict(x, num_iteration=b.best_iteration or None) for b in self.boosters], 1)
        return np.sort(np.clip(out, 0, None), axis=1) * ex.scale[:, None]
