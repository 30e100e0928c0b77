"""Assortments beside the location's own last-period best-sellers and the region's, on real data first.

    .venv/bin/python benchmarks/assortment.py [--worlds real,generated] [--n 100]

Same worlds as benchmarks/forecast.py (Online Retail per country; the generated `small` world per
store and per country, region eu). Runs `atelier train forecast`'s backtest, then at each of its
test origins builds every location's top-N from that origin's forecasts only and scores it on the
next 12 weeks: the share of the location's actual units its list covers, over all locations
(units-weighted) and on average per location. Goal (issue 10): the top-100 captures at least 1.2x
the units of the location's own last-period best-sellers.
"""

from __future__ import annotations

import argparse
import logging

from common import log, save, table
from forecast import _world


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worlds", default="real,generated")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=20)
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    from atelier.models.assortment.evaluate import METHODS
    from atelier.models.assortment.rank import Blend
    from atelier.models.assortment.train import train_assortment
    from atelier.models.forecast.backtest import ForecastConfig
    from atelier.models.forecast.train import train_forecast

    tables, results, goals = [], {}, []
    for world in args.worlds.split(","):
        s = _world(world)
        log(f"{world}: forecast backtest, then assortments")
        forecast = train_forecast(s, "eu", ForecastConfig(epochs=args.epochs), export_model=False)
        result = train_assortment(s, forecast, n=args.n, export_model=False)
        results[world] = result.metrics
        label = "Online Retail" if world == "real" else "generated (small)"
        levels = ["country"] if world == "real" else list(result.metrics["levels"])
        for level in levels:
            m = result.metrics["levels"][level]
            rows = [[meth, f"{m['all'][meth]['units']:.3f}", f"{m['all'][meth]['mean']:.3f}"]
                    + [f"{o[meth]['units']:.3f}" for o in m["per_origin"]] for meth in METHODS]
            tables.append(table(f"{label}, eu, per {level}: share of the next {m['weeks']} weeks' units in the top-{args.n} "
                                f"(blend chosen on the validation origin: {Blend.of(m['blend']).describe()})",
                                ["method", "units captured", "mean per location"] + [f"origin {o['origin']}" for o in m["per_origin"]], rows))
            for how, text in (("units", "all units"), ("mean", "per location, averaged")):
                own, ours = m["all"]["own best-sellers"][how], m["all"]["assortment"][how]
                goals.append([label, level, f"top-{args.n} captures >= 1.2x own last-period best-sellers ({text})",
                              f"{ours:.3f} vs {own:.3f} ({ours / own:.2f}x)", "yes" if ours >= 1.2 * own else "NO"])
    tables.append(table("Goals (issue 10)", ["world", "level", "goal", "measured", "met"], goals))
    save("assortment", {"results": results, "tables": tables})


if __name__ == "__main__":
    main()
