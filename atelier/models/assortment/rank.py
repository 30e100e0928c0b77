"""An assortment: for one location (a country or a store), the catalog ranked by the units it should sell.

A location's expected units of a product over the next `weeks` mix four estimates:

- the forecast, where the location already sells the product: the mean of each week's forecast,
  summed over those weeks (a median would not do: for a product that sells one week in three,
  P50 is zero, yet its expected sales are not);
- its own sales over the last `weeks` (what the location's own best-sellers list reads);
- what similar locations (cosine similarity of what they sold over the last year) are forecast
  to sell of it, per unit of their size, times this location's size;
- the region's forecast mix, times this location's forecast total.

The first two are the location's own evidence, the last two what others say. A small location's
own figures are a few sales: it leans on the others' by `lam = k / (k + its yearly units)`, so a
large one (the UK in Online Retail, 80% of the units) keeps its own forecast and a small one
borrows. `Blend` holds the weights, chosen on the forecast's validation origin
(atelier.models.assortment.evaluate). The result is a weighted mean of the four, in units.

Products the location does not sell yet may still belong in its assortment: they are flagged
`new_here`, with the number of similar locations that carry them: the "what similar stores sell
that this store does not carry yet" a merchandiser reads.

Evaluation (`capture`): the share of a location's actual units over the next `weeks` that its
top-N list covers, beside the location's own last-period best-sellers and the region's.
"""

from __future__ import annotations

from dataclasses import dataclass

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


def similar_locations(sold: np.ndarray, k: int = SIMILAR) -> tuple[np.ndarray, np.ndarray]:
    """(neighbours (L, k) location rows, weights (L, k) summing to 1 where any): by what they sold
    (`sold`, (L, P) units, the year before the origin)."""
    share = sold / np.maximum(sold.sum(1, keepdims=True), 1e-9)
    norm = share / np.maximum(np.linalg.norm(share, axis=1, keepdims=True), 1e-12)
    sim = norm @ norm.T
    np.fill_diagonal(sim, -1)
    k = min(k, max(len(sim) - 1, 1))
    neighbours = np.argsort(-sim, axis=1)[:, :k]
    w = np.clip(np.take_along_axis(sim, neighbours, 1), 0, None)
    return neighbours, w / np.maximum(w.sum(1, keepdims=True), 1e-12)


@dataclass(frozen=True)
class Blend:
    """The weights of a location's expected units (module docstring); the forecast's weight is 1."""

    recent: float = 0.0  # the location's own sales over the last `weeks`
    lean: float = 1.0  # k of `lam`, in median locations' yearly units (inf: lam = 1 everywhere)
    region: float = 0.0  # within the others' estimate, the region's mix beside the similar locations' (weight 1)

    def as_dict(self) -> dict:
        return {"recent": self.recent, "lean": "inf" if np.isinf(self.lean) else self.lean, "region": self.region}

    def describe(self) -> str:
        d = self.as_dict()
        return f"own recent sales {d['recent']}, lean {d['lean']}, region's mix {d['region']}"

    @classmethod
    def of(cls, d: dict) -> "Blend":
        return cls(float(d["recent"]), float(d["lean"]), float(d["region"]))


@dataclass
class Estimates:
    """The four estimates of every (location, product), each (L, P) in units over the next `weeks`."""

    forecast: np.ndarray  # NaN where the location does not sell the product
    recent: np.ndarray
    similar: np.ndarray
    region: np.ndarray
    size: np.ndarray  # (L,) each location's units over the last year
    carried_by: np.ndarray  # (L, P) similar locations that sell the product

    def blend(self, b: Blend) -> np.ndarray:
        """(L, P) expected units: the weighted mean of the four estimates."""
        if np.isinf(b.lean):
            lam = np.ones((len(self.size), 1))
        else:
            k = b.lean * np.median(self.size[self.size > 0]) if (self.size > 0).any() else b.lean
            lam = (k / np.maximum(k + self.size, 1e-12))[:, None]
        mine = np.nan_to_num(self.forecast) + b.recent * self.recent
        others = self.similar + b.region * self.region
        return (mine + lam * others) / (1 + b.recent + lam * (1 + b.region))


def estimates(panel: Panel, origin: int, series: np.ndarray, units: np.ndarray, weeks: int) -> Estimates:
    """The four estimates at `origin`. `series`, `units`: the forecast's active series and their
    expected units summed over the next `weeks`."""
    L, P = len(panel.locations), len(panel.products)
    own = np.full((L, P), np.nan)
    own[panel.location_of[series], panel.product_of[series]] = units
    forecast = np.nan_to_num(own)
    year = _sold(panel, origin, 52)
    size = year.sum(1)
    per_size = forecast / np.maximum(size[:, None], 1e-9)
    neighbours, w = similar_locations(year)
    similar = np.einsum("lk,lkp->lp", w, per_size[neighbours]) * size[:, None]
    mix = forecast.sum(0) / max(forecast.sum(), 1e-12)
    region = forecast.sum(1, keepdims=True) * mix[None, :]
    carried_by = np.zeros((L, P), int)
    for j in range(neighbours.shape[1]):
        carried_by += (forecast[neighbours[:, j]] > 0) & (w[:, j:j + 1] > 0)
    return Estimates(own, _sold(panel, origin, weeks), similar, region, size, carried_by)


def expected_units(panel: Panel, origin: int, series: np.ndarray, units: np.ndarray, weeks: int, blend: Blend = Blend()) -> pd.DataFrame:
    """Every (location, product) with expected units over the next `weeks` (module docstring)."""
    est = estimates(panel, origin, series, units, weeks)
    total = est.blend(blend)
    loc, prod = np.nonzero(total > 0)
    return pd.DataFrame({
        "location": panel.locations[loc], "product_id": panel.products[prod], "expected_units": total[loc, prod],
        "new_here": np.isnan(est.forecast[loc, prod]), "carried_by_similar": est.carried_by[loc, prod],
    })


def top_of(panel: Panel, scores: np.ndarray, n: int, keep: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per location, its `n` products of highest score (> 0; where `keep`, if given), ties by catalog order."""
    out = {}
    for i, loc in enumerate(panel.locations):
        s = scores[i]
        idx = np.nonzero((s > 0) if keep is None else (s > 0) & keep[i])[0]
        out[loc] = panel.products[idx[np.argsort(-s[idx], kind="stable")][:n]]
    return out


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

    Each series is matched to its location's list by a (location, product) key, one `isin` for
    all locations: the blend's choice calls this for each of its 60 candidates, and a frame
    grouped by location per call cost about a second on Online Retail."""
    c = panel.cum("units")
    end = min(origin + weeks, len(panel.weeks))
    actual = c[:, end] - c[:, origin]
    n_products = len(panel.products)
    products = pd.Index(panel.products)
    listed = []
    for i, loc in enumerate(panel.locations):
        at = products.get_indexer(np.asarray(lists.get(loc, []), dtype=object))
        listed.append(i * n_products + at[at >= 0])  # a listed product the panel lacks sold nothing here
    keys = panel.location_of.astype(np.int64) * n_products + panel.product_of
    covered = np.isin(keys, np.concatenate(listed)) if listed else np.zeros(len(keys), bool)
    total = np.bincount(panel.location_of, weights=actual, minlength=len(panel.locations))
    got = np.bincount(panel.location_of, weights=np.where(covered, actual, 0.0), minlength=len(panel.locations))
    per, captured, units = {}, 0.0, 0.0
    for i in sorted(range(len(panel.locations)), key=lambda i: panel.locations[i]):
        if total[i] > 0:
            per[panel.locations[i]] = float(got[i] / total[i])
            captured, units = captured + got[i], units + total[i]
    return {"units": float(captured / units) if units else float("nan"), "mean": float(np.mean(list(per.values()))) if per else float("nan"), "per_location": per}
