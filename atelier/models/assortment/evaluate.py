"""How good an assortment is: the share of next-period units its top-N list captures, beside two baselines.

At each test origin of the forecast's backtest, each location's list is built from that origin's
forecasts and the sales before it (nothing after the origin), then scored on the actual units of
the next `weeks`. Baselines: the location's own best-sellers of the `weeks` before the origin, and
the region's. "carried only" is the assortment without the products the location does not sell
yet, to show what proposing them adds.

The blend's weights (atelier.models.assortment.rank.Blend) are chosen on the forecast's
validation origin, by the capture averaged over locations: a small country's list counts as much
as the UK's. The test origins are then read once with them.
"""

from __future__ import annotations

import itertools

import numpy as np

from atelier.models.assortment import rank
from atelier.models.forecast.backtest import Backtest
from atelier.models.forecast.panel import Panel

METHODS = ("assortment", "carried only", "own best-sellers", "region best-sellers")
# The blends tried on validation: own recent sales, how much small locations lean on others, the region's mix.
GRID = [rank.Blend(r, k, g) for r, k, g in itertools.product((0.0, 0.1, 0.25, 0.5), (1.0, 3.0, 10.0, 30.0, np.inf), (0.0, 0.25, 0.5))]
SELECT_ON = "mean"  # the figure the choice is made on: each location's capture, averaged


def forecast_totals(scored, weeks: int) -> tuple[np.ndarray, np.ndarray]:
    """(series, their expected units summed over horizons 1..weeks) at one backtest origin."""
    ex = scored.examples
    keep = ex.horizon <= weeks
    series, inverse = np.unique(ex.series[keep], return_inverse=True)
    return series, np.bincount(inverse, scored.mean[keep])


def lists_at(panel: Panel, origin: int, series: np.ndarray, totals: np.ndarray, weeks: int, n: int, blend: rank.Blend = rank.Blend()) -> dict[str, dict]:
    est = rank.estimates(panel, origin, series, totals, weeks)
    scores = est.blend(blend)
    own, region = rank.best_sellers(panel, origin, weeks, n)
    return {
        "assortment": rank.top_of(panel, scores, n),
        "carried only": rank.top_of(panel, scores, n, keep=~np.isnan(est.forecast)),
        "own best-sellers": own,
        "region best-sellers": {loc: region for loc in panel.locations},
    }


def choose_blend(panel: Panel, bt: Backtest, n: int, weeks: int) -> tuple[rank.Blend, list[tuple[dict, float]]]:
    """The blend whose lists capture most at the validation origin (ties: the first in `GRID`, the simplest)."""
    scored = bt.validation_scored
    if scored is None:
        return rank.Blend(), []
    est = rank.estimates(panel, scored.origin, *forecast_totals(scored, weeks), weeks)
    got = [(b, rank.capture(panel, scored.origin, weeks, rank.top_of(panel, est.blend(b), n))[SELECT_ON]) for b in GRID]
    best = max(v for _, v in got)
    return next(b for b, v in got if v >= best), [(b.as_dict(), v) for b, v in got]


def backtest(panel: Panel, bt: Backtest, n: int = 100, weeks: int | None = None) -> dict:
    """Capture of every method at every test origin, and over all origins together (units-weighted).

    The blend is chosen first, on the validation origin; the test origins are then read once with it."""
    weeks = weeks or int(max(s.examples.horizon.max() for s in bt.scored))
    blend, tried = choose_blend(panel, bt, n, weeks)
    per_origin, captured, total, means = [], {m: 0.0 for m in METHODS}, 0.0, {m: [] for m in METHODS}
    for scored in bt.scored:
        series, totals = forecast_totals(scored, weeks)
        lists = lists_at(panel, scored.origin, series, totals, weeks, n, blend)
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
    return {"n": n, "weeks": weeks, "blend": blend.as_dict(), "validation": [{**b, "captured": v} for b, v in tried], "all": overall, "per_origin": per_origin}
