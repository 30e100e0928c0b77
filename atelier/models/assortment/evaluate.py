"""How good an assortment is: the share of next-period units its top-N list captures, beside two baselines.

At each test origin of the forecast's backtest, each location's list is built from that origin's
forecasts only (and so from nothing after the origin), then scored on the actual units of the
next `weeks`. Baselines: the location's own best-sellers of the `weeks` before the origin, and the
region's. "forecast only" is the assortment without the products borrowed from similar locations,
to show what that part adds.
"""

from __future__ import annotations

import numpy as np

from atelier.models.assortment import rank
from atelier.models.forecast.backtest import Backtest
from atelier.models.forecast.panel import Panel

METHODS = ("assortment", "forecast only", "own best-sellers", "region best-sellers")
BORROW = (0.0, 0.25, 0.5, 1.0)  # weights of products borrowed from similar locations, chosen on validation
SELECT_ON = "mean"  # the figure the choice is made on: each location's capture, averaged


def forecast_totals(scored, weeks: int) -> tuple[np.ndarray, np.ndarray]:
    """(series, their expected units summed over horizons 1..weeks) at one backtest origin."""
    ex = scored.examples
    keep = ex.horizon <= weeks
    series, inverse = np.unique(ex.series[keep], return_inverse=True)
    return series, np.bincount(inverse, scored.mean[keep])


def lists_at(panel: Panel, origin: int, series: np.ndarray, totals: np.ndarray, weeks: int, n: int, borrow: float = 1.0) -> dict[str, dict]:
    table = rank.expected_units(panel, origin, series, totals, weeks, borrow)
    own, region = rank.best_sellers(panel, origin, weeks, n)
    return {
        "assortment": rank.top(table, n),
        "forecast only": rank.top(table[~table["new_here"]], n),
        "own best-sellers": own,
        "region best-sellers": {loc: region for loc in panel.locations},
    }


def choose_borrow(panel: Panel, bt: Backtest, n: int, weeks: int) -> tuple[float, dict[float, float]]:
    """The weight of borrowed products whose lists capture most at the validation origin (ties: the smaller)."""
    scored = bt.validation_scored
    if scored is None:
        return 1.0, {}
    series, totals = forecast_totals(scored, weeks)
    got = {b: rank.capture(panel, scored.origin, weeks, rank.top(rank.expected_units(panel, scored.origin, series, totals, weeks, b), n))[SELECT_ON]
           for b in BORROW}
    best = max(got.values())
    return min(b for b, v in got.items() if v >= best), got


def backtest(panel: Panel, bt: Backtest, n: int = 100, weeks: int | None = None) -> dict:
    """Capture of every method at every test origin, and over all origins together (units-weighted).

    The weight of borrowed products is chosen first, on the validation origin; the test origins are
    then read once with it."""
    weeks = weeks or int(max(s.examples.horizon.max() for s in bt.scored))
    borrow, tried = choose_borrow(panel, bt, n, weeks)
    per_origin, captured, total, means = [], {m: 0.0 for m in METHODS}, 0.0, {m: [] for m in METHODS}
    for scored in bt.scored:
        series, totals = forecast_totals(scored, weeks)
        lists = lists_at(panel, scored.origin, series, totals, weeks, n, borrow)
        row = {}
        c = panel.cum("units")
        units = float((c[:, min(scored.origin + weeks, len(panel.weeks))] - c[:, scored.origin]).sum())
        for m in METHODS:
            got = rank.capture(panel, scored.origin, weeks, lists[m])
            row[m] = {"units": got["units"], "mean": got["mean"]}
            captured[m] += got["units"] * units
            means[m].append(got["mean"])
        total += units
        per_origin.append({"origin": str(panel.week_starts[scored.origin].date()), **row})
    overall = {m: {"units": captured[m] / total if total else float("nan"), "mean": float(np.mean(means[m]))} for m in METHODS}
    return {"n": n, "weeks": weeks, "borrow": borrow, "validation": {str(b): v for b, v in tried.items()}, "all": overall, "per_origin": per_origin}
