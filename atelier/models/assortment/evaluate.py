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
from atelier.models.forecast.backtest import MODEL, Backtest
from atelier.models.forecast.panel import Panel

METHODS = ("assortment", "forecast only", "own best-sellers", "region best-sellers")


def forecast_totals(scored, weeks: int) -> tuple[np.ndarray, np.ndarray]:
    """(series, their expected units summed over horizons 1..weeks) at one backtest origin."""
    ex = scored.examples
    keep = ex.horizon <= weeks
    series, inverse = np.unique(ex.series[keep], return_inverse=True)
    return series, np.bincount(inverse, rank.expected(scored.forecasts[MODEL][keep]))


def lists_at(panel: Panel, origin: int, series: np.ndarray, totals: np.ndarray, weeks: int, n: int) -> dict[str, dict]:
    table = rank.expected_units(panel, origin, series, totals, weeks)
    own, region = rank.best_sellers(panel, origin, weeks, n)
    return {
        "assortment": rank.top(table, n),
        "forecast only": rank.top(table[~table["new_here"]], n),
        "own best-sellers": own,
        "region best-sellers": {loc: region for loc in panel.locations},
    }


def backtest(panel: Panel, bt: Backtest, n: int = 100, weeks: int | None = None) -> dict:
    """Capture of every method at every test origin, and over all origins together (units-weighted)."""
    weeks = weeks or int(max(s.examples.horizon.max() for s in bt.scored))
    per_origin, captured, total, means = [], {m: 0.0 for m in METHODS}, 0.0, {m: [] for m in METHODS}
    for scored in bt.scored:
        series, totals = forecast_totals(scored, weeks)
        lists = lists_at(panel, scored.origin, series, totals, weeks, n)
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
    return {"n": n, "weeks": weeks, "all": overall, "per_origin": per_origin}
