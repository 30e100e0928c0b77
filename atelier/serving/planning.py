"""What /forecast and /assortment answer, from the region's exported forecast and assortment models.

Both models are computed at training time over the whole catalog (the forecast's next weeks of
every active series, every location's ranked list): a planner's question is a lookup and a
filter, answered in well under a millisecond, and the answer is the one `metrics.json` of that
run judged. A request is checked in this order, and the first problem is the answer:

* a country that is no ISO code (or name): 422 `unknown_country`; a country or a store of
  another region: 403 `other_region` (this region never holds their data); a store no region
  has: 404 `unknown_store`;
* a maison the catalog does not know: 422 `unknown_maison`; a product it does not know: 404
  `unknown_product`;
* a region whose service carries no such model: 404 `no_model`, with the command that trains it.

A known product the location has not sold in the last year has no series: it is answered with
zero weeks ahead (`active: false`), never an error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from atelier.regions import country_to_region, region_of_country
from atelier.serving.recommender import RequestError


@dataclass
class Location:
    level: str  # "country" or "store"
    id: str  # the ISO code, or the store id
    country: str


class Planner:
    """The forecast and assortment of one region, as exported; either may be missing."""

    def __init__(self, region: str, products: pd.DataFrame, stores: pd.DataFrame,
                 forecast_path: Path | None = None, assortment_path: Path | None = None,
                 forecast_tag: str | None = None, assortment_tag: str | None = None):
        """`products`: the catalog (product_id, maison, category); `stores`: every store (store_id, country)."""
        self.region = region
        self.products = products.set_index("product_id")[["maison", "category"]]
        self.maisons = sorted(self.products["maison"].unique())
        self.stores = stores.set_index("store_id")["country"]
        self.forecast_tag, self.assortment_tag = forecast_tag, assortment_tag
        self.forecasts = self.lists = None
        self.segments: list[dict] = []
        self.mix: dict[str, list[float]] = {}
        if forecast_path is not None:
            f = pd.read_parquet(forecast_path / "forecasts.parquet")
            f["week_start"] = pd.to_datetime(f["week_start"], utc=True)
            self.forecasts = f.set_index(["level", "location"]).sort_index()
            self.horizon = int(f["week_start"].nunique())
        if assortment_path is not None:
            self.lists = pd.read_parquet(assortment_path / "assortments.parquet").set_index(["level", "location"]).sort_index()
            seg = json.loads((assortment_path / "segments.json").read_text())
            self.segments, self.mix = seg["profiles"], seg["mix"]

    def busiest_country(self) -> str | None:
        if self.forecasts is None:
            return None
        countries = self.forecasts.loc["country"] if "country" in self.forecasts.index.get_level_values(0) else None
        return None if countries is None or not len(countries) else str(countries.groupby(level=0)["p50"].sum().idxmax())

    def location(self, country: str | None, store_id: str | None) -> Location:
        if store_id is not None:
            if store_id not in self.stores.index:
                raise RequestError(404, "unknown_store", f"no store {store_id!r} in the group's catalog of stores")
            home = region_of_country(self.stores[store_id])
            if home != self.region:
                raise RequestError(403, "other_region", f"store {store_id!r} is in region {home}; ask that region's service")
            return Location("store", store_id, self.stores[store_id])
        code = country if country in country_to_region() else None
        if code is None:
            raise RequestError(422, "unknown_country", f"{country!r} is no ISO 3166 alpha-2 country code")
        home = region_of_country(code)
        if home != self.region:
            raise RequestError(403, "other_region", f"country {code} is served by region {home}; ask that region's service")
        return Location("country", code, code)

    def _maison(self, maison: str | None) -> None:
        if maison is not None and maison not in self.maisons:
            raise RequestError(422, "unknown_maison", f"unknown maison {maison!r}; known: {', '.join(self.maisons)}")

    def forecast(self, *, product_ids: list[str] | None, maison: str | None, country: str | None, store_id: str | None, horizon: int) -> tuple[Location, list[dict]]:
        """Weeks ahead per product at one location: [{product_id, active, weeks: [{week_start, p10, p50, p90}]}]."""
        where = self.location(country, store_id)
        self._maison(maison)
        if product_ids is not None:
            unknown = [p for p in product_ids if p not in self.products.index]
            if unknown:
                raise RequestError(404, "unknown_product", f"unknown product(s): {', '.join(map(repr, unknown[:5]))}")
        if self.forecasts is None:
            raise RequestError(404, "no_model", f"region {self.region} has no forecast model; train it with `atelier train forecast -r {self.region}`, then build")
        here = _rows_at(self.forecasts, where)
        if maison is not None:
            ids = sorted(set(here["product_id"]) & set(self.products.index[self.products["maison"] == maison]))
        else:
            ids = list(dict.fromkeys(product_ids))
        weeks = sorted(here["week_start"].unique())[:horizon] if len(here) else self._weeks(horizon)
        by_product = {p: g for p, g in here[here["week_start"].isin(weeks)].groupby("product_id")}
        out = []
        for p in ids:
            g = by_product.get(p)
            # a product launching inside the horizon has rows from its launch week on: zero before
            known = {pd.Timestamp(r.week_start): r for r in g.itertuples()} if g is not None else {}
            out.append({
                "product_id": p, "active": g is not None,
                "weeks": [{"week_start": str(pd.Timestamp(w).date()), **({"p10": _r(r.p10), "p50": _r(r.p50), "p90": _r(r.p90)} if (r := known.get(pd.Timestamp(w))) is not None
                                                                      else {"p10": 0.0, "p50": 0.0, "p90": 0.0})} for w in weeks],
            })
        return where, out

    def _weeks(self, horizon: int) -> list:
        return sorted(self.forecasts["week_start"].unique())[:horizon]

    def assortment(self, *, country: str | None, store_id: str | None, n: int, maison: str | None) -> tuple[Location, list[dict], list[dict]]:
        """The location's top `n` (optionally of one maison) and its segments with their share of its clientele."""
        where = self.location(country, store_id)
        self._maison(maison)
        if self.lists is None:
            raise RequestError(404, "no_model", f"region {self.region} has no assortment model; train it with `atelier train assortment -r {self.region}`, then build")
        here = _rows_at(self.lists, where)
        if maison is not None:
            here = here[here["product_id"].map(self.products["maison"]) == maison]
        here = here.head(n)
        items = [{
            "product_id": r.product_id, "maison": str(self.products.at[r.product_id, "maison"]) if r.product_id in self.products.index else "",
            "category": str(self.products.at[r.product_id, "category"]) if r.product_id in self.products.index else "",
            "expected_units": _r(r.expected_units), "expected_revenue": _r(r.expected_revenue), "new_here": bool(r.new_here),
            "segments": [int(s) for s in (r.segments if r.segments is not None else [])],
        } for r in here.itertuples()]
        shares = self.mix.get(where.country) or [p["share"] for p in self.segments]
        segments = [{"id": p["id"], "name": p["name"], "share": _r(shares[i] if i < len(shares) else 0.0),
                     "top_features": [f["feature"] + (" (above average)" if f["direction"] == "above" else " (below average)") for f in p["top_features"]]}
                    for i, p in enumerate(self.segments)]
        return where, items, segments


def _rows_at(table: pd.DataFrame, where: Location) -> pd.DataFrame:
    """A table's rows at one location (indexed by level and location); none where it has none."""
    try:
        return table.loc[(where.level, where.id)]
    except KeyError:
        return table.iloc[:0]


def _r(x) -> float:
    return round(float(np.nan_to_num(x)), 3)
