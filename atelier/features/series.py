"""Weekly sales series: what the forecast and assortment models learn from, one region at a time.

Two kinds of table per level, computed with the other feature tables by `atelier features
compute` and stored beside them (encrypted with the region's key), each the source of a Feast view
(`feature_repo/sales_features.py`):

* `<level>_sales_weekly` (`country_sales_weekly`, `store_sales_weekly`): units and revenue per
  product and location and week, where a location is a country (every sale has one: the line's
  country, else its client's) or a store (sales made in a store, where the data has stores).
  Only weeks with sales are stored; a series is zero on the other weeks of its life.
* `<level>_clientele_weekly`: per location and week, the clientele that bought there (distinct
  clients, clients buying for the first time in the region) and the location's total units: the
  clientele mix a forecast reads beside each product's own history.

A table's location column is named by its Feast join key (`KEY`): `country_code` or `store_id`.

Sales are purchases, anonymous lines included (they are real demand); returns are not netted
out, since what a planner ships is what clients order. Weeks start on Monday, 00:00 UTC; a row is
stamped at the last second of its week (`event_timestamp`), the moment its figures are complete,
so that a point-in-time read as of an origin only sees whole weeks before it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from atelier.features.schemas import field

DAY = 86_400
WEEK = 7 * DAY
LEVELS = ("country", "store")
KEY = {"country": "country_code", "store": "store_id"}  # the location's column (and Feast join key) per level

# The one statement of each table's columns: the pipeline writes them, the models read them, the
# feature views are derived from them. `location` stands for the level's key column (`KEY`).
SALES_WEEKLY = pa.schema([
    field("location", pa.string()),  # an ISO alpha-2 country code, or a store id
    field("product_id", pa.string()),
    field("week_start", pa.timestamp("us", "UTC"), "Monday 00:00 UTC starting the week."),
    field("event_timestamp", pa.timestamp("us", "UTC")),
    field("units", pa.float64(), "Units of the product sold at the location in the week (returns not netted)."),
    field("revenue", pa.float64(), "Revenue of those units, in the data's currency."),
    field("orders", pa.int64(), "Sales lines of the product at the location in the week."),
])
CLIENTELE_WEEKLY = pa.schema([
    field("location", pa.string()),
    field("week_start", pa.timestamp("us", "UTC"), "Monday 00:00 UTC starting the week."),
    field("event_timestamp", pa.timestamp("us", "UTC")),
    field("units", pa.float64(), "Units sold at the location in the week, all products."),
    field("revenue", pa.float64(), "Revenue at the location in the week, all products."),
    field("clients", pa.int64(), "Distinct clients who bought at the location in the week."),
    field("new_clients", pa.int64(), "Clients whose first purchase in the region fell in the week."),
    # how far the week's data goes (the last week may be partial)
    field("last_sale_at", pa.timestamp("us", "UTC"), "Time of the week's last sale: before the week's end, the week is partial."),
])



TABLES = {"sales": SALES_WEEKLY, "clientele": CLIENTELE_WEEKLY}
# What a table's rows are keyed by, besides the week: a frame's columns, before the location is renamed.
KEYS = {"sales": ["level", "location", "product_id", "week"], "clientele": ["level", "location", "week"]}


def table_name(kind: str, level: str) -> str:
    """'sales', 'store' -> 'store_sales_weekly'."""
    return f"{level}_{kind}_weekly"


def view_names(levels) -> list[str]:
    """The sales and clientele views of `levels`: what a model trained on those series read."""
    return [table_name(kind, level) for level in levels for kind in TABLES]


def schema(kind: str, level: str) -> pa.Schema:
    """A table's schema at a level: the location column named by the level's join key."""
    base = TABLES[kind]
    return pa.schema([f.with_name(KEY[level]) if f.name == "location" else f for f in base])


def week_of(seconds: np.ndarray) -> np.ndarray:
    """Whole weeks since the Monday before the epoch (1970-01-01 was a Thursday)."""
    return (np.asarray(seconds, np.int64) // DAY + 3) // 7


def week_start_seconds(week: np.ndarray) -> np.ndarray:
    return (np.asarray(week, np.int64) * 7 - 3) * DAY


def week_timestamp(week: np.ndarray) -> pd.DatetimeIndex:
    return pd.to_datetime(week_start_seconds(week), unit="s", utc=True)


def sales_lines(events: pd.DataFrame, client_country: pd.Series) -> pd.DataFrame:
    """The purchases of an events frame as sales lines: (client_id, product_id, week, country, store_id, units, revenue).

    `events` has the pipeline's event columns (`ts` in epoch seconds, and the lake's optional
    `quantity`, `country`, `store_id` where present); `client_country` maps a client id to its
    country, for lines that do not carry one.
    """
    p = events[events["event_type"] == "purchase"]
    missing = pd.Series(None, index=p.index, dtype=object)
    country = p["country"] if "country" in p else missing
    country = country.where(country.notna(), p["client_id"].map(client_country))
    units = p["quantity"].astype(float).fillna(1.0) if "quantity" in p else pd.Series(1.0, index=p.index)
    return pd.DataFrame({
        "client_id": p["client_id"].to_numpy(), "product_id": p["product_id"].to_numpy(), "week": week_of(p["ts"].to_numpy()),
        "country": country.to_numpy(), "store_id": (p["store_id"] if "store_id" in p else missing).to_numpy(),
        "units": units.to_numpy(), "revenue": p["amount"].astype(float).fillna(0.0).to_numpy(), "ts": p["ts"].to_numpy(),
    })


def _by_location(lines: pd.DataFrame) -> pd.DataFrame:
    """Each line once per level it has a location at: its country, and its store when in a store."""
    parts = []
    for level, column in (("country", "country"), ("store", "store_id")):
        part = lines[lines[column].notna()]
        parts.append(part.assign(level=level, location=part[column].astype(str)))
    return pd.concat(parts, ignore_index=True)


def weekly_sales(lines: pd.DataFrame) -> pd.DataFrame:
    """Per (level, location, product, week): units, revenue and the number of sales lines."""
    df = _by_location(lines)
    return df.groupby(["level", "location", "product_id", "week"], sort=False).agg(
        units=("units", "sum"), revenue=("revenue", "sum"), orders=("units", "size")).reset_index()


def weekly_clientele(lines: pd.DataFrame) -> pd.DataFrame:
    """Per (level, location, week): units, revenue, distinct clients, and clients buying for the first time.

    Lines must hold every purchase of their clients (the lake's parts are client-complete), so a
    client's first week is known within the frame.
    """
    df = _by_location(lines)
    known = df[df["client_id"].notna()]
    first = known.groupby("client_id")["week"].transform("min")
    keys = ["level", "location", "week"]
    clients = known.groupby(keys, sort=False)["client_id"].nunique().rename("clients").to_frame()
    clients["new_clients"] = known[known["week"] == first].groupby(keys, sort=False)["client_id"].nunique()
    totals = df.groupby(["level", "location", "week"], sort=False).agg(units=("units", "sum"), revenue=("revenue", "sum"), last_sale=("ts", "max"))
    out = totals.join(clients, how="left").fillna({"clients": 0, "new_clients": 0}).reset_index()
    return out.astype({"clients": np.int64, "new_clients": np.int64})


def combine(parts: list[pd.DataFrame], keys: list[str]) -> pd.DataFrame:
    """Sum the per-part tables (clients of different parts are different clients; `last_sale` is a max)."""
    if not parts:
        return pd.DataFrame(columns=keys)
    df = pd.concat(parts, ignore_index=True)
    how = {c: ("max" if c == "last_sale" else "sum") for c in df.columns if c not in keys}
    return df.groupby(keys, sort=True).agg(how).reset_index()


def to_table(df: pd.DataFrame, kind: str, level: str) -> pa.Table:
    """The rows of one level of a weekly frame (with `level`, `location` and `week` columns) in the
    table's stated schema, stamped at the end of each week."""
    target = schema(kind, level)
    df = df[df["level"] == level] if len(df) else df
    if not len(df):
        return target.empty_table()
    start = week_start_seconds(df["week"].to_numpy())
    cols = {}
    for f in target:
        if f.name == KEY[level]:
            cols[f.name] = pa.array(df["location"].to_numpy(), f.type)
        elif f.name == "week_start":
            cols[f.name] = pa.array(start * 10**6, f.type)
        elif f.name == "event_timestamp":
            cols[f.name] = pa.array((start + WEEK - 1) * 10**6, f.type)
        elif f.name == "last_sale_at":
            cols[f.name] = pa.array(df["last_sale"].to_numpy(np.int64) * 10**6, f.type)
        else:
            cols[f.name] = pa.array(df[f.name].to_numpy(), f.type)
    return pa.table(cols, schema=target)


def from_table(table: pa.Table, level: str) -> pd.DataFrame:
    """A stored table back as a frame with `level` and `location` columns (what the models read)."""
    return table.to_pandas().rename(columns={KEY[level]: "location"}).assign(level=level)
