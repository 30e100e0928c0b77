"""Forecast accuracy: WAPE, MASE, weighted quantile loss and P10-P90 coverage.

All take flat arrays of cells (one per series, origin and horizon) so that any grouping (per
horizon, per origin) is a mask away:

* WAPE = sum |actual - P50| / sum actual: the share of the units that the forecast misplaces.
* MASE: each series' mean absolute error divided by its in-sample seasonal-naive error (the mean
  |y_t - y_{t-52}| over its history before the origin, |y_t - y_{t-1}| where there is no year of
  history), averaged over series with a non-zero scale (Hyndman and Koehler, 2006).
* wQL: the pinball loss of P10, P50 and P90, doubled and summed over cells, over the sum of the
  actuals, averaged over the three quantiles (the weighted quantile loss of M5-style reports).
* coverage: the share of cells whose actual lies within [P10, P90]; 0.8 for calibrated quantiles.
"""

from __future__ import annotations

import numpy as np

QUANTILES = (0.1, 0.5, 0.9)


def wape(actual: np.ndarray, p50: np.ndarray) -> float:
    total = float(np.sum(actual))
    return float(np.sum(np.abs(actual - p50)) / total) if total > 0 else float("nan")


def pinball(actual: np.ndarray, forecast: np.ndarray, q: float) -> np.ndarray:
    diff = actual - forecast
    return np.maximum(q * diff, (q - 1) * diff)


def wql(actual: np.ndarray, quantiles: np.ndarray) -> float:
    """`quantiles`: (N, 3) P10, P50, P90."""
    total = float(np.sum(actual))
    if total <= 0:
        return float("nan")
    return float(np.mean([2 * np.sum(pinball(actual, quantiles[:, i], q)) / total for i, q in enumerate(QUANTILES)]))


def coverage(actual: np.ndarray, quantiles: np.ndarray) -> float:
    return float(np.mean((actual >= quantiles[:, 0]) & (actual <= quantiles[:, 2]))) if len(actual) else float("nan")


def mase(actual: np.ndarray, p50: np.ndarray, series: np.ndarray, scale: np.ndarray) -> float:
    """`series`: a key per cell's series (and origin, whose history sets the scale); `scale`: that
    series' in-sample seasonal-naive error (`naive_scale`)."""
    ok = scale > 0
    if not ok.any():
        return float("nan")
    _, inverse = np.unique(series[ok], return_inverse=True)
    n = np.bincount(inverse)
    error = np.bincount(inverse, np.abs(actual[ok] - p50[ok])) / n
    return float(np.mean(error / (np.bincount(inverse, scale[ok]) / n)))


def naive_scale(history: np.ndarray, first: np.ndarray, season: int = 52) -> np.ndarray:
    """Per row of `history` (weeks before the origin), the in-sample seasonal-naive mean absolute error.

    Counted from each series' first sale (`first`, a column of `history`); with less than a year
    and a week of history, the one-week naive error instead.
    """
    out = np.zeros(len(history))
    weeks = history.shape[1]
    for lag in (season, 1):
        if weeks <= lag:
            continue
        diff = np.abs(history[:, lag:] - history[:, :-lag])
        cols = np.arange(lag, weeks)
        valid = cols[None, :] - lag >= first[:, None]
        n = valid.sum(1)
        rows = (out == 0) & (n > 0) & ((weeks - first > season) if lag == season else True)
        out[rows] = (diff * valid).sum(1)[rows] / n[rows]
    return out


def report(actual: np.ndarray, quantiles: np.ndarray, series: np.ndarray, scale: np.ndarray) -> dict[str, float]:
    """Every metric of one set of cells; `quantiles` (N, 3), or (N, 1) for a point forecast."""
    p50 = quantiles[:, 1] if quantiles.shape[1] == 3 else quantiles[:, 0]
    out = {"wape": wape(actual, p50), "mase": mase(actual, p50, series, scale)}
    if quantiles.shape[1] == 3:
        out |= {"wql": wql(actual, quantiles), "coverage": coverage(actual, quantiles)}
    return out
