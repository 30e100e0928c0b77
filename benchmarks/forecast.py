"""The forecast network beside seasonal naive, an 8-week moving average and LightGBM, on real data first.

    .venv/bin/python benchmarks/forecast.py [--worlds real,generated] [--epochs 20]

* real: UCI Online Retail (../shared/datasets/online_retail/), imported with the shipped mapping,
  region eu, weekly units per product x country (the set has no stores);
* generated: the `small` preset world, region eu, per product x store and per product x country;
* generated-medium: the same on the `medium` preset (100k clients, 5,000 products), where weekly
  demand per series is less intermittent (not in the default run: about 30 minutes more).

Each runs `atelier train forecast`'s own backtest: the network's epochs and LightGBM's rounds
chosen on a validation origin, then 4 rolling test origins 3 weeks apart, each fitted on its past
only and scored once over 12 weeks ahead. Prints WAPE per horizon and overall (with MASE, the
weighted quantile loss and P10-P90 coverage) and the goals of issue 10.
"""

from __future__ import annotations

import argparse
import logging

from common import ROOT, bench_home, log, save, table

SOURCE = ROOT.parent / "shared" / "datasets" / "online_retail" / "online_retail.parquet"
MAPPING = ROOT / "examples" / "online_retail" / "mapping.yaml"


def _world(name: str):
    """A data home with the world's features computed for eu."""
    from atelier.features.pipeline import compute_features
    from atelier.protect.keys import LocalKeyStore
    from atelier.regions import region_codes
    from atelier.settings import Settings

    size = "medium" if name == "generated-medium" else "small"
    spec = {"source": str(SOURCE), "series": 2} if name == "real" else {"size": size, "series": 2}  # series: the feature tables' layout
    home, fresh = bench_home(f"forecast_{name}", spec)
    s = Settings(home=home)
    if fresh:
        for r in region_codes():
            LocalKeyStore.init(s.paths.keys, r)
        if name == "real":
            from atelier.data.transactions import import_transactions

            log(f"importing {SOURCE.name} with {MAPPING.relative_to(ROOT)}")
            import_transactions(s, SOURCE, MAPPING)
        else:
            from atelier.data.generate import generate_world
            from atelier.data.world import preset

            log(f"generating the {size} world")
            generate_world(s, preset(size))
        log("computing eu's features")
        compute_features(s, "eu")
        (home / "spec.json").write_text(__import__("json").dumps(spec))
    return s


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worlds", default="real,generated")
    ap.add_argument("--epochs", type=int, default=20)
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    from atelier.models.forecast.backtest import METHODS, MODEL, ForecastConfig
    from atelier.models.forecast.train import train_forecast

    tables, results, goal_rows = [], {}, []
    for world in args.worlds.split(","):
        s = _world(world)
        log(f"{world}: backtest")
        result = train_forecast(s, "eu", ForecastConfig(epochs=args.epochs), export_model=False)
        results[world] = result.metrics
        for level, m in result.metrics["levels"].items():
            per = m["per_horizon"]
            rows = [[h + 1] + [f"{per[meth][h]:.3f}" for meth in METHODS] for h in range(len(per[MODEL]))]
            test = m["test"]
            rows.append(["all"] + [f"{test[meth]['wape']:.3f}" for meth in METHODS])
            label = {"real": "Online Retail", "generated": "generated (small)", "generated-medium": "generated (medium, 100k clients)"}[world]
            tables.append(table(
                f"{label}, eu, product x {level}: WAPE per weeks ahead, {len(m['test_origins'])} origins ({', '.join(m['test_origins'])}), "
                f"{m['series']:,} series; units of series new after an origin, not forecast: {m['new_series_share']:.1%}",
                ["weeks ahead"] + list(METHODS), rows))
            band = m["choices"].get("band") or {}
            moved = (f"; the band's sides scaled {band['scales'][0]:.2f} (lower) and {band['scales'][1]:.2f} (upper), chosen on the validation origin, "
                     f"where they missed {band['miss_below']:.1%} and {band['miss_above']:.1%} of the cells (after: {band['miss_below_after']:.1%}, {band['miss_above_after']:.1%})"
                     if band else "")
            tables.append(table(f"{label}, {level}: every metric over all origins and horizons{moved}", ["method", "WAPE", "MASE", "wQL", "P10-P90 coverage"],
                                [[meth, f"{test[meth]['wape']:.3f}", f"{test[meth]['mase']:.3f}", f"{test[meth].get('wql', float('nan')):.3f}",
                                  f"{test[meth]['coverage']:.3f}" if "coverage" in test[meth] else "-"] for meth in METHODS]))
            launches = m.get("launches", {})
            if launches.get("cells"):
                lm = launches["methods"]
                tables.append(table(f"{label}, {level}: products launched inside the horizon, forecast from their attributes "
                                    f"({launches['cells']:,} cells, {launches['units']:,.0f} units; "
                                    "the baselines have no history to read and forecast zero)",
                                    ["method", "WAPE", "wQL", "P10-P90 coverage"],
                                    [[meth, f"{lm[meth]['wape']:.3f}", f"{lm[meth].get('wql', float('nan')):.3f}",
                                      f"{lm[meth]['coverage']:.3f}" if "coverage" in lm[meth] else "-"] for meth in METHODS]))
            simple = min(test["seasonal naive"]["wape"], test["moving average"]["wape"])
            model = test[MODEL]
            goal_rows += [
                [label, level, "WAPE <= 0.85x the better of seasonal naive and moving average", f"{model['wape']:.3f} vs {simple:.3f} ({model['wape'] / simple:.4f}x)", "yes" if model["wape"] <= 0.85 * simple else "NO"],
                [label, level, "WAPE <= 1.0x LightGBM", f"{model['wape']:.3f} vs {test['lightgbm']['wape']:.3f} ({model['wape'] / test['lightgbm']['wape']:.2f}x)", "yes" if model["wape"] <= test["lightgbm"]["wape"] else "NO"],
                [label, level, "P10-P90 coverage in [0.72, 0.88]", f"{model['coverage']:.3f}", "yes" if 0.72 <= model["coverage"] <= 0.88 else "NO"],
            ]
    tables.append(table("Goals (issue 10)", ["world", "level", "goal", "measured", "met"], goal_rows))
    # the default run's figures are the README's; another choice of worlds is saved beside them
    save("forecast" if args.worlds == "real,generated" else "forecast_" + args.worlds.replace(",", "_").replace("-", "_"), {"results": results, "tables": tables})


if __name__ == "__main__":
    main()
