"""An assortment: for one location (a country or a store), the catalog ranked by the units it should sell.

Expected units over the next `weeks` come from the forecast where the location already sells the
product: the mean of each week's forecast, estimated from its quantiles by Swanson's rule
(0.3 P10 + 0.4 P50 + 0.3 P90), summed over those weeks. A median would not do: for a product that
sells one week in three, P50 is zero, yet its expected sales are not. Where it does not, the product may still belong in
the assortment: similar locations (cosine similarity of what they sold over the last year) that
carry it say how much it sells there per unit of their size, and this location's size scales
that. Those products are flagged `new_here`, with the locations they are carried in: the "what
similar stores sell that this store does not carry yet" a merchandiser reads.

Evaluation (`capture`): the share of a location's actual units over the next `weeks` that its
top-N list covers, beside the location's own last-period best-sellers and the region's.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from atelier.models.forecast.panel import Panel

SIMILAR = 5  # locations a location learns from


def _sold(panel: Panel, origin: int, weeks: int) -> np.ndarray:
    """(locations, products) units over the `weeks` before `origin`."""
    c = panel.cum("units")
    units = c[:, origin] - c[:, max(0, origin - weeks)]
    out = np.zeros((len(panel.locations), len(panel.products)))
    np.add.at(out, (panel.location_of, panel.product_of), units)
    return out


def similar_locations(panel: Panel, origin: int, k: int = SIMILAR) -> tuple[np.ndarray, np.ndarray]:
    """(neighbours (L, k) location rows, weights (L, k) summing to 1 where any): by what they sold in the year before `origin`."""
    sold = _sold(panel, origin, 52)
    share = sold / np.maximum(sold.sum(1, keepdims=True), 1e-9)
    norm = share / np.maximum(np.linalg.norm(share, axis=1, keepdims=True), 1e-12)
    sim = norm @ norm.T
    np.fill_diagonal(sim, -1)
    k = min(k, max(len(sim) - 1, 1))
    neighbours = np.argsort(-sim, axis=1)[:, :k]
    w = np.clip(np.take_along_axis(sim, neighbours, 1), 0, None)
    return neighbours, w / np.maximum(w.sum(1, keepdims=True), 1e-12)


def expected_units(panel: Panel, origin: int, series: np.ndarray, units: np.ndarray, weeks: int, borrow: float = 1.0) -> pd.DataFrame:
    """Every (location, product) with its expected units over the next `weeks`.

    `series`, `units`: the forecast's active series at `origin` and their expected units (`expected`)
    summed over the next `weeks`. Products a location does not sell are estimated from its similar locations.
    """
    L, P = len(panel.locations), len(panel.products)
    own = np.full((L, P), np.nan)
    own[panel.location_of[series], panel.product_of[series]] = units
    size = _sold(panel, origin, 52).sum(1)  # each location's units over the last year
    per_size = np.nan_to_num(own) / np.maximum(size[:, None], 1e-9)
    neighbours, w = similar_locations(panel, origin)
    borrowed = np.einsum("lk,lkp->lp", w, per_size[neighbours]) * size[:, None] * borrow
    carried_by = np.zeros((L, P), int)
    for j in range(neighbours.shape[1]):
        carried_by += (np.nan_to_num(own[neighbours[:, j]]) > 0) & (w[:, j:j + 1] > 0)
    new_here = np.isnan(own) & (borrowed > 0)
    total = np.where(np.isnan(own), np.where(new_here, borrowed, 0.0), own)
    loc, prod = np.nonzero(total > 0)
    return pd.DataFrame({
        "location": panel.locations[loc], "product_id": panel.products[prod], "expected_units": total[loc, prod],
        "new_here": new_here[loc, prod], "carried_by_similar": carried_by[loc, prod],
    })


def top(table: pd.DataFrame, n: int) -> dict[str, np.ndarray]:
    """Per location, its `n` products of highest expected units."""
    ranked = table.sort_values(["location", "expected_units"], ascending=[True, False], kind="stable")
    return {loc: g["product_id"].to_numpy()[:n] for loc, g in ranked.groupby("location", sort=True)}


def best_sellers(panel: Panel, origin: int, weeks: int, n: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(each location's own top-`n` over the `weeks` before `origin`, the region's top-`n` over them)."""
    sold = _sold(panel, origin, weeks)
    own = {}
    for i, loc in enumerate(panel.locations):
        order = np.argsort(-sold[i], kind="stable")
        own[loc] = panel.products[order[sold[i][order] > 0][:n]]
    region = sold.sum(0)
    order = np.argsort(-region, kind="stable")
    return own, panel.products[order[region[order] > 0][:n]]


def capture(panel: Panel, origin: int, weeks: int, lists: dict[str, np.ndarray]) -> dict:
    """Share of each location's actual units in [origin, origin + weeks) that its list covers.

    Returns {"units": captured over all locations / their total units, "mean": the average of the
    locations' shares (locations with sales only), "per_location": {location: share}}.
    """
    c = panel.cum("units")
    end = min(origin + weeks, len(panel.weeks))
    actual = c[:, end] - c[:, origin]
    frame = pd.DataFrame({"location": panel.locations[panel.location_of], "product_id": panel.products[panel.product_of], "units": actual})
    per, captured, total = {}, 0.0, 0.0
    for loc, g in frame.groupby("location", sort=True):
        t = g["units"].sum()
        if t <= 0:
            continue
        got = g.loc[g["product_id"].isin(lists.get(loc, [])), "units"].sum()
        per[loc], captured, total = float(got / t), captured + got, total + t
    return {"units": captured / total if total else float("nan"), "mean": float(np.mean(list(per.values()))) if per else float("nan"), "per_location": per}
