"""`atelier train assortment -r R`: per country and per store, the catalog ranked for its clientele.

Stands on the forecast (it runs after `atelier train forecast` in the same command):

1. evaluation at the forecast's backtest origins (atelier.models.assortment.evaluate): the share
   of next-period units each location's top-N captures, beside its own last-period best-sellers
   and the region's;
2. client segments (atelier.models.assortment.segments) from the client features as of the last
   complete week, with each location's mix and each product's audience;
3. the assortments of every location from the forecast's final weeks ahead, with the blend chosen
   in 1: expected units and revenue, the segments each product serves, the products proposed
   from similar locations;
4. metrics.json and segments.png in the run folder; `atelier-assortment-<region>` in the BentoML
   model store (assortments.parquet, segments.json, model.json).

Segments are computed from the region's clients only; the exported tables hold products,
locations and segment shares, never a client id.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from atelier.context import RegionContext
from atelier.features import series as S
from atelier.io import write_json_atomic
from atelier.models.assortment import evaluate, rank, segments
from atelier.models.forecast.train import ForecastResult
from atelier.models.plots import segments_plot
from atelier.models.progress import Steps
from atelier.models.store import code_version, save_model, use_bentoml_home
from atelier.protect.parquet import read_dataset
from atelier.settings import Settings

MAX_ITEMS = 500  # the longest list /assortment answers


def model_name(region: str) -> str:
    return f"atelier-assortment-{region}"


@dataclass
class AssortmentResult:
    region: str
    run_dir: Path
    tag: str | None
    metrics: dict
    assortments: pd.DataFrame
    segments: segments.Segments


def _clientele(ctx: RegionContext, as_of: pd.Timestamp) -> tuple[pd.DataFrame, pd.Series, pd.DataFrame]:
    """(segment features per client, each client's country, (client, product) purchases) as of `as_of`."""
    settings, region, keys = ctx.settings, ctx.region, ctx.keys
    activity = read_dataset(settings.paths.feature_table("client_activity", region), keys).to_pandas()
    latest = segments.latest(activity, as_of)
    features = segments.client_features(latest, as_of)
    bought = latest[["client_id", "purchased_products"]].explode("purchased_products").dropna().rename(columns={"purchased_products": "product_id"})
    country = read_dataset(settings.paths.client_table("clients", region), keys, columns=["client_id", "country"]).to_pandas().set_index("client_id")["country"]
    return features, country, bought


def train_assortment(settings: Settings, forecast: ForecastResult, *, n: int = 100, k: int = 6, seed: int = 7,
                     steps: Steps | None = None, export_model: bool = True) -> AssortmentResult:
    steps = steps or Steps()
    region = forecast.region
    run_dir = forecast.run_dir.with_name(forecast.run_dir.name.replace("forecast-", "assortment-"))
    run_dir.mkdir(parents=True, exist_ok=True)
    metrics: dict = {"region": region, "n": n, "levels": {}}
    advance = steps.step("assortment: capture at the backtest origins", len(forecast.backtests))
    for level, bt in forecast.backtests.items():
        metrics["levels"][level] = evaluate.backtest(forecast.panels[level], bt, n=n)
        advance(1)

    advance = steps.step("assortment: client segments", 1)
    first = next(iter(forecast.panels.values()))
    as_of = first.week_starts[-1] + pd.Timedelta(days=7)  # the end of the last complete week
    features, country, bought = _clientele(RegionContext.of(settings, region), as_of)
    segs = segments.fit(features, k=k, seed=seed)
    mix = segs.mix(country.reindex(features.index).dropna())
    audience = segs.audience(bought)
    metrics["segments"] = segs.profiles
    advance(1)

    advance = steps.step("assortment: every location's list", 1)
    tables = []
    for level, panel in forecast.panels.items():
        f = forecast.forecasts[forecast.forecasts["level"] == level]
        keyed = pd.MultiIndex.from_frame(panel.series[["location", "product_id"]]).get_indexer(pd.MultiIndex.from_frame(f[["location", "product_id"]]))
        totals = f.assign(series=keyed).groupby("series")["mean"].sum()  # expected units (before P50's rounding)
        weeks = int(f["week_start"].nunique())
        table = rank.expected_units(panel, len(panel.weeks), totals.index.to_numpy(), totals.to_numpy(), weeks, rank.Blend.of(metrics["levels"][level]["blend"]))
        price = f.groupby("product_id")["unit_price"].median()
        table["expected_revenue"] = table["expected_units"] * table["product_id"].map(price).fillna(0).to_numpy()
        table = table.sort_values(["location", "expected_units"], ascending=[True, False], kind="stable").groupby("location").head(MAX_ITEMS)
        table.insert(0, "level", level)
        table["country"] = table["location"].map(dict(zip(panel.locations, panel.location_country)))
        tables.append(table)
    assortments = pd.concat(tables, ignore_index=True)
    top_segments = audience.apply(lambda r: [int(i) for i in np.argsort(-r.to_numpy())[:2] if r.iloc[i] > 0], axis=1)
    assortments["segments"] = assortments["product_id"].map(top_segments).apply(lambda v: v if isinstance(v, list) else [])
    advance(1)

    segments_plot(segs.profiles, mix, run_dir / "segments.png", f"{region}: client segments and each country's mix")
    workdir = run_dir / "model"
    workdir.mkdir(exist_ok=True)
    pq.write_table(pa.Table.from_pandas(assortments, preserve_index=False), workdir / "assortments.parquet")
    (workdir / "segments.json").write_text(json.dumps({"profiles": segs.profiles, "mix": {str(c): row.round(4).tolist() for c, row in mix.iterrows()}}, indent=2))
    (workdir / "model.json").write_text(json.dumps({"region": region, "task": "assortment", "n": n, "levels": list(forecast.panels),
                                                    "forecast_run": str(forecast.run_dir), "code_version": code_version(),
                                                    "metrics": {lv: m["all"] for lv, m in metrics["levels"].items()}}, indent=2, default=str))
    write_json_atomic(run_dir / "metrics.json", metrics)
    tag = None
    if export_model:
        advance = steps.step("assortment: exporting to the BentoML model store", 1)
        use_bentoml_home(settings)
        tag = save_model(workdir, model_name(region), labels={"region": region, "task": "assortment", "framework": "numpy"},
                         metadata={"region": region, "n": n, "segments": len(segs.profiles), "code_version": code_version(),
                                   # the views it reads (as tables of the lake), for `atelier features list`
                                   "feature_views": S.view_names(forecast.panels)
                                   + ["client_activity", "client_profile"]})
        metrics["bentoml_tag"] = tag
        write_json_atomic(run_dir / "metrics.json", metrics)
        advance(1)
    return AssortmentResult(region, run_dir, tag, metrics, assortments, segs)


def summary(result: AssortmentResult):
    from rich.table import Table

    levels = result.metrics["levels"]
    blends = "; ".join(f"{lv}: {rank.Blend.of(m['blend']).describe()}" for lv, m in levels.items())
    t = Table(title=f"{result.region}: top-{result.metrics['n']} assortments, share of next-period units captured (backtest origins)",
              caption=f"blend chosen on validation ({blends})")
    for col in ("level", "method", "units captured", "mean per location"):
        t.add_column(col, justify="left" if col in ("level", "method") else "right")
    for level, m in levels.items():
        for method in evaluate.METHODS:
            r = m["all"][method]
            t.add_row(level, method, f"{r['units']:.3f}", f"{r['mean']:.3f}")
    return t
