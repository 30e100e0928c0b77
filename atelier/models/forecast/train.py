"""`atelier train forecast -r R`: weekly series -> backtest beside the baselines -> final fit -> export.

Per level the region has sales at (countries always; stores where the data has store ids):

1. the rolling-origin backtest (atelier.models.forecast.backtest): choices on the validation
   origin, then every test origin fitted on its past only and scored once;
2. a final fit on every complete week with the chosen epochs, and the forecast of the next
   `horizon` weeks for every active series, from the last complete week on;
3. metrics.json, forecast.png (actual against P50 and the P10-P90 band for the best-selling
   series at the last test origin) and horizon.png (WAPE per week ahead) in the run folder;
4. the networks, their vocabularies and the forecasts exported to the BentoML model store as
   `atelier-forecast-<region>` (labels region, task=forecast), with a model.json the service reads.

A forecast holds products, countries and stores, never a client: the series are sums over them.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from atelier.context import RegionContext
from atelier.errors import AtelierError
from atelier.features import series as S
from atelier.io import write_json_atomic
from atelier.models.forecast import features as F
from atelier.models.forecast import network
from atelier.models.forecast.backtest import METHODS, MODEL, Backtest, ForecastConfig, origins, run, served
from atelier.models.forecast.panel import Panel, load
from atelier.models.plots import forecast_plot, horizon_plot
from atelier.models.progress import Steps
from atelier.models.store import code_version, save_model, use_bentoml_home
from atelier.protect.parquet import read_dataset
from atelier.settings import Settings

PLOTTED = 4  # series shown in forecast.png


def model_name(region: str) -> str:
    return f"atelier-forecast-{region}"


@dataclass
class ForecastResult:
    region: str
    run_dir: Path
    tag: str | None
    metrics: dict
    backtests: dict[str, Backtest]
    panels: dict[str, Panel]
    forecasts: pd.DataFrame  # the next weeks of every active series, every level (as exported)


def levels_of(ctx: RegionContext) -> list[str]:
    """The levels with sales in the region: countries, and stores where sales carry a store id."""
    from atelier.protect.parquet import dataset_info

    settings, region = ctx.settings, ctx.region
    paths = {level: settings.paths.feature_table(S.table_name("sales", level), region) for level in S.LEVELS}
    if not any(p.exists() for p in paths.values()):
        raise AtelierError(f"no weekly sales for region {region}", where=str(paths["country"]), fix=f"run `atelier features compute -r {region}`")
    return [level for level, p in paths.items() if p.exists() and dataset_info(p)["rows"] > 0]


def train_forecast(settings: Settings, region: str, config: ForecastConfig | None = None, *, steps: Steps | None = None,
                   export_model: bool = True, levels: list[str] | None = None) -> ForecastResult:
    config = config or ForecastConfig()
    steps = steps or Steps()
    ctx = RegionContext.of(settings, region)  # built once, passed down
    region = ctx.region
    levels = levels or levels_of(ctx)  # checked before anything is written
    if not levels:
        raise AtelierError(f"region {region} has no sales to forecast", fix=f"import events with purchases, then `atelier features compute -r {region}`")
    steps.step("reading weekly sales", len(levels))
    panels = {level: load(ctx, level) for level in levels}
    for panel in panels.values():
        origins(panel, config)  # enough weeks for the backtest asked, or one clear error
    run_id = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    run_dir = settings.paths.runs(region) / f"forecast-{run_id}"
    run_dir.mkdir(parents=True, exist_ok=True)
    metrics: dict = {"region": region, "config": config.model_dump(), "levels": {}}
    backtests, finals = {}, {}
    workdir = run_dir / "model"
    workdir.mkdir(exist_ok=True)
    for level in levels:
        panel = panels[level]
        bt = run(panel, config, lambda name, total=None, level=level: steps.step(f"{level}: {name}", total))
        backtests[level] = bt
        advance = steps.step(f"{level}: final fit on every complete week", 1)
        vocabulary = F.Vocabulary.of(panel)
        end = len(panel.weeks)
        train = F.training_rows(panel, end, vocabulary, origins=config.training_origins, max_examples=config.max_examples, seed=config.seed,
                                first_origin=config.first_origin)
        net, _ = network.fit(train, vocabulary.sizes(), epochs=bt.choices["epochs"], members=config.members, learning_rate=config.learning_rate,
                             decay=config.decay, seed=config.seed)
        ahead = F.forecast_rows(panel, end, vocabulary, config.horizon)
        q = network.predict(net, ahead)
        finals[level] = _forecast_table(panel, ahead, served(q, bt.choices), network.mean_units(q))
        advance(1)
        metrics["levels"][level] = _level_metrics(panel, bt)
        _plots(panel, bt, metrics["levels"][level]["per_horizon"], run_dir, region, level)
        network.save(net, workdir / f"network_{level}")
        (workdir / f"vocabulary_{level}.json").write_text(json.dumps(vocabulary.values))

    forecasts = pd.concat(finals.values(), ignore_index=True)
    pq.write_table(pa.Table.from_pandas(forecasts, preserve_index=False), workdir / "forecasts.parquet")
    # Every store of the group and its country (catalog data, no client): the service answers a
    # store of another region with 403, and one that exists nowhere with 404.
    stores_path = settings.paths.catalog("stores")
    stores = read_dataset(stores_path, None, columns=["store_id", "country"]) if stores_path.exists() else pa.table({"store_id": pa.array([], pa.string()), "country": pa.array([], pa.string())})
    pq.write_table(stores, workdir / "stores.parquet")
    description = {
        "region": region, "task": "forecast", "levels": levels, "horizon": config.horizon, "quantiles": [0.1, 0.5, 0.9],
        "numeric_features": list(F.NUMERIC), "categorical_features": list(F.CATEGORICAL),
        "first_week": {lv: str(f["week_start"].min()) for lv, f in finals.items()},
        "metrics": {lv: m["test"] for lv, m in metrics["levels"].items()},
        "p50_offset": {lv: m["choices"]["p50_offset"] for lv, m in metrics["levels"].items()},
        "p10_follows": {lv: m["choices"]["p10_follows"] for lv, m in metrics["levels"].items()},
        "band_scales": {lv: m["choices"]["band_scales"] for lv, m in metrics["levels"].items()}, "run": str(run_dir), "code_version": code_version(),
    }
    (workdir / "model.json").write_text(json.dumps(description, indent=2, default=str))
    write_json_atomic(run_dir / "metrics.json", metrics)
    tag = None
    if export_model:
        advance = steps.step("exporting to the BentoML model store", 1)
        use_bentoml_home(settings)
        # the views it reads (as tables of the lake; `atelier features list` shows the usage)
        views = S.view_names(levels) + ["product_catalog", "product_attributes"]
        metadata = {"region": region, "levels": levels, "horizon": config.horizon, "code_version": code_version(), "feature_views": views,
                    "wape": {lv: m["test"][MODEL]["wape"] for lv, m in metrics["levels"].items()}}
        tag = save_model(workdir, model_name(region), labels={"region": region, "task": "forecast", "framework": "tensorflow"}, metadata=metadata)
        metrics["bentoml_tag"] = tag
        write_json_atomic(run_dir / "metrics.json", metrics)
        advance(1)
    return ForecastResult(region, run_dir, tag, metrics, backtests, panels, forecasts)


def _forecast_table(panel: Panel, ex: F.Examples, q: np.ndarray, mean: np.ndarray) -> pd.DataFrame:
    """The next weeks' P10/P50/P90 and expected units (`network.mean_units`) per series, with the
    series' recent unit price (for revenue)."""
    price = _recent_price(panel)[ex.series]
    return pd.DataFrame({
        "level": panel.level,
        "location": panel.series["location"].to_numpy()[ex.series],
        "product_id": panel.series["product_id"].to_numpy()[ex.series],
        "week_start": S.week_timestamp(panel.weeks[0] + ex.origin + ex.horizon - 1),
        "p10": q[:, 0], "p50": q[:, 1], "p90": q[:, 2], "mean": mean, "unit_price": price,
    })


def _recent_price(panel: Panel) -> np.ndarray:
    """Revenue per unit over each series' last year (the catalog price where it sold nothing)."""
    units, revenue = panel.units[:, -52:].sum(1), panel.revenue[:, -52:].sum(1)
    catalog = panel.series["price"].to_numpy(float)
    return np.where(units > 0, revenue / np.maximum(units, 1e-9), np.nan_to_num(catalog))


def _level_metrics(panel: Panel, bt: Backtest) -> dict:
    date = lambda col: str(panel.week_starts[col].date())  # noqa: E731
    return {
        "series": int(len(panel.series)), "weeks": [date(0), date(len(panel.weeks) - 1)],
        "validation_origin": date(bt.validation_origin), "test_origins": [date(o) for o in bt.test_origins],
        "cells": int(sum(len(s.examples) for s in bt.scored)), "new_series_share": bt.new_series_share,
        "choices": bt.choices, "validation": bt.validation, "test": bt.test(), "launches": bt.launches(),
        "per_horizon": bt.per_horizon(), "per_origin": bt.per_origin(),
    }


def _plots(panel: Panel, bt: Backtest, per_horizon: dict[str, list[float]], run_dir: Path, region: str, level: str) -> None:
    last = bt.scored[-1]
    ex, q = last.examples, last.forecasts[MODEL]
    top = pd.Series(panel.units[:, :last.origin].sum(1)).nlargest(PLOTTED).index.to_numpy()
    shown = []
    for row in top:
        sel = ex.series == row
        if not sel.any():
            continue
        order = np.argsort(ex.horizon[sel])
        name = f"{panel.series['product_id'].iat[row]} in {panel.series['location'].iat[row]}"
        shown.append({"name": name, "actual": panel.units[row], "origin": last.origin,
                      "p10": q[sel][order, 0], "p50": q[sel][order, 1], "p90": q[sel][order, 2]})
    weeks = panel.week_starts.tz_convert(None).to_numpy()
    forecast_plot(weeks, shown, run_dir / f"forecast_{level}.png", f"{region}, {level} series: forecast at the last test origin")
    horizon_plot(per_horizon, run_dir / f"horizon_{level}.png", f"{region}, {level} series: backtest WAPE per horizon")


def summary(result: ForecastResult):
    """The test origins' figures per level: the network beside every baseline."""
    from rich.table import Table

    t = Table(title=f"{result.region}: forecast backtest ({len(next(iter(result.backtests.values())).test_origins)} origins, read once)")
    for col in ("level", "method", "WAPE", "MASE", "wQL", "P10-P90 coverage"):
        t.add_column(col, justify="left" if col in ("level", "method") else "right")
    for level, m in result.metrics["levels"].items():
        for method in METHODS:
            r = m["test"][method]
            fmt = lambda k: f"{r[k]:.3f}" if k in r else "-"  # noqa: E731
            t.add_row(level, method, fmt("wape"), fmt("mase"), fmt("wql"), fmt("coverage"))
        launches = m.get("launches", {})
        if launches.get("cells"):  # products launched inside the horizon; the naive baselines forecast them zero
            for method in (MODEL, "lightgbm"):
                r = launches["methods"][method]
                t.add_row(f"{level} launches", method, f"{r['wape']:.3f}", "-", f"{r['wql']:.3f}", f"{r['coverage']:.3f}")
    return t
