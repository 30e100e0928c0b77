"""The forecast's view of a region: every series as a row of weekly units, every week as a column.

Reads what `atelier features compute` wrote (`<level>_sales_weekly`, `<level>_clientele_weekly`,
see atelier.features.series) and the catalog, and nothing upstream of them. A series is one product at
one location of one level (a country, or a store). The panel is dense (zero on weeks without
sales) and ends at the last complete week: the data's final week is dropped when its last sale
falls before the week's end, since a partial week would read as a collapse in demand.

Beside the series it keeps what a forecast reads at each origin: the location's totals and
clientele (distinct clients, first-time clients), the product's total over the level's
locations, and the static product facts (maison, category, price, launch week).

Products the catalog launches during the panel or after it (its `launch_date`, kept in the lake as
`catalog_timestamp`) also get a row at every location that may sell them (a location of a
country the product is sold in; at store level, a store of the product's maison), with or
without sales yet: a product launched inside the horizon has no history, and is forecast from
its attributes (see atelier.models.forecast.features.launching).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from atelier.context import RegionContext
from atelier.errors import AtelierError
from atelier.features import series as S
from atelier.protect.parquet import read_dataset


@dataclass
class Panel:
    """Weekly series of one level (country or store) of one region."""

    level: str
    weeks: np.ndarray  # (W,) week numbers (atelier.features.series.week_of), consecutive
    series: pd.DataFrame  # (S rows) location, product_id, maison, category, price, launch_week
    units: np.ndarray  # (S, W)
    revenue: np.ndarray  # (S, W)
    location_of: np.ndarray  # (S,) row of `locations`
    product_of: np.ndarray  # (S,) row of `products`
    locations: np.ndarray  # (L,) location names
    location_country: np.ndarray  # (L,) the ISO country of each location (a store's country)
    location_units: np.ndarray  # (L, W)
    location_clients: np.ndarray  # (L, W)
    location_new_clients: np.ndarray  # (L, W)
    products: np.ndarray  # (P,) product ids
    product_units: np.ndarray  # (P, W) the product's units over every location of the level
    cumulative: dict = field(default_factory=dict, repr=False)  # cumulative sums, built on first use

    @property
    def week_starts(self) -> pd.DatetimeIndex:
        return S.week_timestamp(self.weeks)

    def cum(self, name: str) -> np.ndarray:
        """Cumulative sums over weeks with a leading zero column: the sum of weeks [a, b) is c[:, b] - c[:, a]."""
        if name not in self.cumulative:
            m = getattr(self, name)
            self.cumulative[name] = np.concatenate([np.zeros((len(m), 1)), np.cumsum(m, axis=1, dtype=np.float64)], axis=1)
        return self.cumulative[name]

    def first_sale(self) -> np.ndarray:
        """The column of each series' first week with sales (W where none)."""
        if "first" not in self.cumulative:
            nz = self.units > 0
            self.cumulative["first"] = np.where(nz.any(1), nz.argmax(1), len(self.weeks))
        return self.cumulative["first"]

    def column(self, week_start: pd.Timestamp) -> int:
        """The column of the week that contains `week_start`."""
        return int(S.week_of(np.array([pd.Timestamp(week_start).timestamp()]))[0] - self.weeks[0])

    def poisoned(self, origin: int, rng: np.random.Generator) -> "Panel":
        """A copy whose weeks from `origin` on are random: what a leak test feeds the features."""
        out = Panel(**{k: getattr(self, k) for k in self.__dataclass_fields__ if k != "cumulative"})
        for name in ("units", "revenue", "location_units", "location_clients", "location_new_clients", "product_units"):
            m = getattr(self, name).copy()
            m[:, origin:] = rng.random((len(m), m.shape[1] - origin)) * 1e4
            setattr(out, name, m)
        return out


def load(ctx: RegionContext, level: str = "country") -> Panel:
    """The region's panel at `level`, from its feature tables and the catalog."""
    if level not in S.LEVELS:
        raise AtelierError(f"unknown series level {level!r}", fix=f"use one of: {', '.join(S.LEVELS)}")
    settings, region, keys = ctx.settings, ctx.region, ctx.keys
    path = settings.paths.feature_table(S.table_name("sales", level), region)
    if not path.exists():
        raise AtelierError(f"no weekly sales for region {region}", where=str(path), fix=f"run `atelier features compute -r {region}`")
    sales = S.from_table(read_dataset(path, keys), level)
    places = S.from_table(read_dataset(settings.paths.feature_table(S.table_name("clientele", level), region), keys), level)
    if not len(sales):
        raise AtelierError(f"region {region} has no {level} sales to forecast", where=str(path),
                           fix="the data has no store ids" if level == "store" else "import events with purchases")
    products = read_dataset(settings.paths.catalog("products"), None).to_pandas()
    stores = None
    if level == "store":
        stores = read_dataset(settings.paths.catalog("stores"), None).to_pandas()
    return build(sales, places, products, level, stores)


def build(sales: pd.DataFrame, places: pd.DataFrame, products: pd.DataFrame, level: str, stores: pd.DataFrame | None = None) -> Panel:
    """A panel from the two weekly tables (as atelier.features.series writes them) and the catalog."""
    sweek, pweek = S.week_of(_seconds(sales["week_start"])), S.week_of(_seconds(places["week_start"]))
    first, last = int(min(sweek.min(), pweek.min())), int(max(sweek.max(), pweek.max()))
    data_end = pd.to_datetime(places["last_sale_at"], utc=True).max()
    if data_end.normalize() + pd.Timedelta(days=1) < S.week_timestamp(np.array([last]))[0] + pd.Timedelta(days=7):
        last -= 1  # the final week is not complete
    weeks = np.arange(first, last + 1)
    W = len(weeks)
    keep = sweek <= last
    sales, sweek = sales[keep], sweek[keep]

    sold = sales[["location", "product_id"]].drop_duplicates()
    locations = np.array(sorted(set(sold["location"]) | set(places["location"])), dtype=object)
    if level == "store" and stores is not None:
        country = stores.set_index("store_id")["country"].reindex(locations).to_numpy()
    else:
        country = locations.copy()
    launch_of = _launch_columns(products, first)
    launching = _launch_pairs(products, launch_of, locations, country, level, stores)
    pairs = pd.concat([sold, launching]).drop_duplicates().sort_values(["location", "product_id"]).reset_index(drop=True)
    row = pd.MultiIndex.from_frame(pairs).get_indexer(pd.MultiIndex.from_frame(sales[["location", "product_id"]]))
    units = np.zeros((len(pairs), W), np.float32)
    revenue = np.zeros((len(pairs), W), np.float32)
    np.add.at(units, (row, sweek - first), sales["units"].to_numpy(np.float32))
    np.add.at(revenue, (row, sweek - first), sales["revenue"].to_numpy(np.float32))

    loc_index = {loc: i for i, loc in enumerate(locations)}
    location_of = pairs["location"].map(loc_index).to_numpy()
    loc = {name: np.zeros((len(locations), W), np.float32) for name in ("units", "clients", "new_clients")}
    pkeep = pweek <= last
    prow = places["location"][pkeep].map(loc_index).to_numpy()
    for name in loc:
        np.add.at(loc[name], (prow, pweek[pkeep] - first), places[name][pkeep].to_numpy(np.float32))

    product_ids, product_of = np.unique(pairs["product_id"].to_numpy(dtype=object), return_inverse=True)
    product_units = np.zeros((len(product_ids), W), np.float32)
    np.add.at(product_units, product_of, units)

    cat = products.set_index("product_id").reindex(pairs["product_id"])
    price = cat["price"].astype(float).to_numpy() if "price" in cat else np.full(len(pairs), np.nan)
    launch = launch_of.reindex(pairs["product_id"]).to_numpy(float)
    table = pairs.assign(maison=cat["maison"].fillna("").to_numpy(), category=cat["category"].fillna("").to_numpy(), price=price, launch_column=launch)
    return Panel(level, weeks, table, units, revenue, location_of, product_of, locations, country,
                 loc["units"], loc["clients"], loc["new_clients"], product_ids, product_units)


def _launch_columns(products: pd.DataFrame, first: int) -> pd.Series:
    """Each catalog product's launch week as a panel column (may be negative), by product id; NaN
    where the catalog does not know it (no `launch_date`: the lake keeps the epoch)."""
    column = "launch_date" if "launch_date" in products else "catalog_timestamp" if "catalog_timestamp" in products else None
    out = pd.Series(np.nan, index=products["product_id"].to_numpy(), dtype=float)
    if column is None:
        return out[~out.index.duplicated()]
    ts = pd.to_datetime(products[column], utc=True)
    known = (ts.notna() & (ts > pd.Timestamp(0, tz="UTC"))).to_numpy()
    out[known] = S.week_of(_seconds(ts[known])) - first
    return out[~out.index.duplicated()]


def _launch_pairs(products: pd.DataFrame, launch: pd.Series, locations: np.ndarray, country: np.ndarray, level: str,
                  stores: pd.DataFrame | None) -> pd.DataFrame:
    """(location, product_id) for every product launched from the panel's first week on, at every
    location that may sell it: its countries (everywhere when the catalog lists none) and, for
    stores, a store of its maison."""
    new = products[products["product_id"].map(launch).to_numpy(float) >= 0]
    if not len(new) or not len(locations):
        return pd.DataFrame({"location": pd.Series(dtype=object), "product_id": pd.Series(dtype=object)})
    grid = pd.DataFrame({"location": np.tile(locations, len(new)), "country": np.tile(country, len(new)),
                         "product_id": np.repeat(new["product_id"].to_numpy(), len(locations)),
                         "maison": np.repeat(new["maison"].to_numpy(), len(locations))})
    if "countries" in new:
        allowed = {p: set(c) for p, c in zip(new["product_id"], new["countries"]) if c is not None and len(c)}
        ok = np.array([p not in allowed or c in allowed[p] for p, c in zip(grid["product_id"], grid["country"])], bool)
        grid = grid[ok]
    if level == "store":
        if stores is None or "maison" not in stores:
            return grid.iloc[:0][["location", "product_id"]]
        grid = grid[grid["location"].map(stores.set_index("store_id")["maison"]).to_numpy() == grid["maison"].to_numpy()]
    return grid[["location", "product_id"]]


def _seconds(ts: pd.Series) -> np.ndarray:
    """Epoch seconds of a timestamp column, whatever its unit and time zone."""
    return pd.to_datetime(ts, utc=True).dt.tz_convert(None).to_numpy().astype("datetime64[s]").astype(np.int64)
