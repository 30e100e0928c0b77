"""What a forecast could reach on the generated worlds: the generator's own demand, beside the moving average.

    .venv/bin/python benchmarks/forecast_reference.py [--worlds small,grain] [--replicas 24]

The generated world draws every sale from hidden traits (each client's taste, loyalty, budget and
activity, each product's style, appeal, launch and price) and from chance. Drawing the same
world's events again (`simulate_events(..., replica=k)`: same clients, same catalog, another
draw) many times gives, for every cell (product x country or store, week), the distribution its
sales come from given those traits. Its median is the best point forecast for WAPE that knows
the traits; its 10th and 90th percentiles are a calibrated P10-P90 band. This script scores that
reference on the forecast benchmark's test cells of the world as generated (replica 0), beside
the 8-week moving average on the same cells, so the issue's goals can be read against it:

* WAPE at most 0.85x the better of seasonal naive and the moving average;
* P10-P90 coverage between 0.72 and 0.88.

It is not an exact ceiling: one draw also fixes state the past reveals (how many sessions each
client happened to get), which the reference averages away and a model could read. It shows
whether a goal is within reach of a model that forecasts the world's real demand well.

Worlds (region eu, as `benchmarks/forecast.py`):
* small: the `small` preset, the forecast benchmark's generated world (5,000 clients, 800 products);
* grain: 200,000 clients over 60 products, where each cell sells a few units a week.

Cells: every series with a sale in the year before an origin, 12 weeks ahead, at the backtest's 4
test origins 3 weeks apart (the last one 12 weeks before the last complete week). Launches inside
the horizon are left out: the moving average has nothing to read for them.
"""

from __future__ import annotations

import argparse
import logging

import numpy as np
import pandas as pd
import pyarrow as pa
from common import log, save, table

WORLDS = {"small": {"clients": 5_000, "products": 800}, "grain": {"clients": 200_000, "products": 60}}
LEVELS = ("country", "store")


def panels(spec, replica: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per level, (series keys, units per series and complete week) of region eu's purchases in one
    draw, as the pipeline counts them (`series.sales_lines`, `series.weekly_sales`)."""
    import pyarrow.compute as pc

    from atelier.data.events import simulate_events
    from atelier.data.world import make_catalog, make_clients
    from atelier.features import series as S

    catalog = make_catalog(spec)
    t0 = int(np.datetime64(spec.start.isoformat(), "s").astype(np.int64))
    first_week = S.week_of(np.array([t0]))[0] + 1  # the first complete week
    weeks = S.week_of(np.array([t0 + spec.days * 86_400]))[0] - first_week  # up to the last complete one
    sold = []
    for first in range(0, spec.clients, spec.chunk_clients):
        clients = make_clients(spec, catalog, first, min(spec.chunk_clients, spec.clients - first))
        eu = clients.region == "eu"
        ids = np.asarray(clients.table.column("client_id").to_numpy(zero_copy_only=False))
        ev = simulate_events(spec, catalog, clients, first, replica=replica)
        ev = ev.filter(pc.and_(pc.equal(ev.column("event_type"), "purchase"), pc.is_in(ev.column("client_id"), value_set=pa.array(ids[eu]))))
        frame = ev.to_pandas()
        frame["ts"] = frame.pop("event_timestamp").dt.tz_convert(None).to_numpy().astype("datetime64[s]").astype(np.int64)
        sold.append(S.weekly_sales(S.sales_lines(frame, pd.Series(clients.country[eu], index=ids[eu]))))
    weekly = pd.concat(sold, ignore_index=True).groupby(["level", "location", "product_id", "week"], sort=False)["units"].sum().reset_index()
    weekly["week"] -= first_week
    weekly = weekly[(weekly["week"] >= 0) & (weekly["week"] < weeks)]
    out = {}
    for level in LEVELS:
        w = weekly[weekly["level"] == level]
        series, row = np.unique((w["location"] + "|" + w["product_id"]).to_numpy(str), return_inverse=True)
        grid = np.zeros((len(series), weeks))
        np.add.at(grid, (row, w["week"].to_numpy()), w["units"].to_numpy())
        out[level] = (series, grid)
    return out


def align(keys: np.ndarray, other: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """`other`'s units laid out on `keys` (zero for a series it never sold)."""
    series, grid = other
    out = np.zeros((len(keys), grid.shape[1]))
    pos = np.searchsorted(series, keys).clip(0, max(len(series) - 1, 0))
    found = series[pos] == keys if len(series) else np.zeros(len(keys), bool)
    out[found] = grid[pos[found]]
    return out


def score(actual: np.ndarray, draws: np.ndarray) -> dict:
    """The reference (median and band of `draws`) and the moving average on the test cells of `actual`:
    the backtest's test origins, horizon and active series (`backtest.origins`'s rule, `features.active`'s)."""
    from atelier.models.forecast.backtest import ForecastConfig
    from atelier.models.forecast.baselines import MOVING_WEEKS
    from atelier.models.forecast.features import YEAR

    config = ForecastConfig()
    last = actual.shape[1] - config.horizon
    err = {"reference": 0.0, "moving average": 0.0}
    total = covered = cells = zeros = 0
    for origin in [last - i * config.step for i in range(config.origins)]:
        rows = np.flatnonzero(actual[:, max(0, origin - YEAR):origin].sum(1) > 0)
        moving = actual[rows, origin - MOVING_WEEKS:origin].mean(1)
        for h in range(config.horizon):
            y, d = actual[rows, origin + h], draws[:, rows, origin + h]
            lo, mid, hi = np.quantile(d, [0.1, 0.5, 0.9], axis=0, method="inverted_cdf")
            err["reference"] += np.abs(y - mid).sum()
            err["moving average"] += np.abs(y - moving).sum()
            total += y.sum()
            covered += ((y >= lo) & (y <= hi)).sum()
            cells += len(y)
            zeros += (y == 0).sum()
    return {"wape": float(err["reference"] / total), "moving_average_wape": float(err["moving average"] / total),
            "ratio": float(err["reference"] / err["moving average"]), "coverage": float(covered / cells), "no_sale": float(zeros / cells),
            "cells": int(cells)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worlds", default="small,grain")
    ap.add_argument("--replicas", type=int, default=24, help="draws of the same world's events beside the world as generated")
    args = ap.parse_args()
    unknown = sorted(set(args.worlds.split(",")) - set(WORLDS))
    if unknown or args.replicas < 1:
        ap.error(f"unknown world(s) {', '.join(unknown)}: use some of {', '.join(WORLDS)}" if unknown else "--replicas must be at least 1")
    logging.disable(logging.WARNING)
    from atelier.data.world import WorldSpec

    rows, results = [], {}
    for name in args.worlds.split(","):
        spec = WorldSpec(**WORLDS[name])
        log(f"{name}: the world as generated and {args.replicas} more draws of its events")
        world = panels(spec, 0)
        draws = {level: [] for level in LEVELS}
        for k in range(1, args.replicas + 1):
            for level, p in panels(spec, k).items():
                draws[level].append(align(world[level][0], p))
        for level in LEVELS:
            r = score(world[level][1], np.stack(draws[level]))
            results[f"{name}/{level}"] = r
            rows.append([name, level, f"{r['cells']:,}", f"{r['no_sale']:.3f}", f"{r['wape']:.3f}", f"{r['moving_average_wape']:.3f}",
                         f"{r['ratio']:.3f}x", f"{r['coverage']:.3f}"])
    text = table(f"The generator's own demand ({args.replicas} draws of the same world) on the forecast benchmark's test cells, eu",
                ["world", "level", "cells", "no sale", "reference WAPE", "moving average WAPE", "reference / moving average", "reference P10-P90 coverage"], rows)
    save("forecast_reference", {"tables": [text], "replicas": args.replicas, "worlds": {k: WORLDS[k] for k in args.worlds.split(",")}, "results": results})


if __name__ == "__main__":
    main()
