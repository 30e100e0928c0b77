"""The feature pipeline: events in, time-stamped feature rows out, one region at a time.

Windowed aggregates (purchases over 30/90/365 days, ...) change on two kinds of days: when an
event happens, and when an old event leaves a window. The pipeline emits one row per entity for
each such day, stamped at the end of that day, with the values as of that moment. Feast's
point-in-time join then returns, for any time t, exactly the values computed from events up to
the end of the last complete day before t: never from a later event. Rows for expiries that lie
in the future are emitted too; Feast only serves a row once its time has come, so the online
store stays right as time passes without recomputing anything.

Reads the region's encrypted events, writes the region's encrypted feature tables, and only
those: clients of one region never meet another region's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from atelier.context import RegionContext
from atelier.features import schemas, series
from atelier.features.schemas import CLIENT_WINDOWS, ENGAGEMENT_WINDOWS, POPULARITY_WINDOWS, PURCHASE_HISTORY, RECENT_HISTORY
from atelier.io import staged_dir
from atelier.protect.parquet import DatasetWriter, dataset_info, open_dataset, read_dataset, write_dataset
from atelier.protect.residency import assert_region_clients
from atelier.settings import Settings

DAY = 86_400
WEIGHT = {"purchase": 5.0, "wishlist": 2.0, "view": 1.0}

# The windows and the tables' columns are stated once, in atelier.features.schemas.


@dataclass
class Windowed:
    """Change points (entity index, day) and each window's aggregate there."""

    key: np.ndarray
    day: np.ndarray
    values: dict[str, np.ndarray]


def windowed_aggregates(
    key: np.ndarray, day: np.ndarray, etype: np.ndarray, amount: np.ndarray, windows: dict, count: np.ndarray | None = None
) -> Windowed:
    """Aggregates over trailing windows at every day on which any of them changes.

    `key`, `day`, `etype`, `amount` describe events (day = whole days since epoch); `count` is how
    many events a row stands for (1 when rows are single events). A window of w days at day t
    covers events on days t-w+1 .. t.
    """
    count = np.ones(len(key)) if count is None else np.asarray(count, float)
    span = np.int64(day.max() - day.min() + 800) if len(day) else np.int64(1)
    base = day.min() - 400 if len(day) else 0
    # Each (key, day) as one int64, ordered as the pair: 1-d sorts and searches are ~10x faster
    # than sorting rows of two.
    comp = key * span + (day - base)
    order = np.argsort(comp, kind="stable")
    comp, etype, amount, count = comp[order], etype[order], amount[order], count[order]
    of_type = {ev: etype == ev for ev in {ev for ev, _, _ in windows.values()}}
    at = {ev: comp[mask] for ev, mask in of_type.items()}  # each type's events, in (key, day) order
    cp = _sorted_unique(np.concatenate([comp, *(at[ev] + w for ev, _, w in windows.values())]))
    ck, cd = cp // span, cp % span + base
    # A window's value at a change point is a difference of prefix sums: the events of its type up
    # to the point (hi, shared by the type's windows) minus those before its start (lo, per width).
    hi = {ev: np.searchsorted(at[ev], cp, side="right") for ev in at}
    lo: dict[tuple[str, int], np.ndarray] = {}
    values = {}
    for name, (ev, what, w) in windows.items():
        if (ev, w) not in lo:
            lo[ev, w] = np.searchsorted(at[ev], cp - w, side="right")
        v = count[of_type[ev]] if what == "count" else np.nan_to_num(amount[of_type[ev]])
        csum = np.concatenate([[0.0], np.cumsum(v)])
        values[name] = csum[hi[ev]] - csum[lo[ev, w]]
    return Windowed(ck, cd, values)


def _sorted_unique(x: np.ndarray) -> np.ndarray:
    """np.unique of an int array by sorting: numpy 2.4's np.unique is ~8x slower on millions of ints."""
    x = np.sort(x)
    return x[np.concatenate([[True], x[1:] != x[:-1]])] if len(x) else x


def _as_of_last(key: np.ndarray, day: np.ndarray, value: np.ndarray, at_key: np.ndarray, at_day: np.ndarray, span: int, base: int):
    """For each (at_key, at_day): the value of the last event of that key on or before that day.

    Events must be sorted by (key, day). Returns (values, found mask).
    """
    comp = key * span + (day - base)
    pos = np.searchsorted(comp, at_key * span + (at_day - base), side="right") - 1
    found = (pos >= 0) & (key[np.maximum(pos, 0)] == at_key)
    return value[np.maximum(pos, 0)], found


def events_frame(table: pa.Table, products: pd.DataFrame) -> pd.DataFrame:
    optional = [c for c in ("quantity", "country", "store_id") if c in table.column_names]
    df = table.select(["client_id", "product_id", "event_type", "event_timestamp", "amount", *optional]).to_pandas()
    ts = df["event_timestamp"].astype("int64") // 10**6  # us -> s
    df["ts"] = ts
    df["day"] = ts // DAY
    joined = products.reindex(df["product_id"])
    df["maison"] = joined["maison"].to_numpy()
    df["category"] = joined["category"].to_numpy()
    return df


def engaged_events(df: pd.DataFrame) -> pd.DataFrame:
    """What client features are made of: a client's own purchases, wishlist adds and views.
    Anonymous lines and returns only feed popularity."""
    return df[df["client_id"].notna() & df["event_type"].isin(list(WEIGHT))]


def daily_counts(df: pd.DataFrame) -> pd.DataFrame:
    """Events per (product, day, event type): how many (`n`) and their amount, popularity's input."""
    return df.groupby(["product_id", "day", "event_type"], sort=False).agg(n=("ts", "size"), amount=("amount", "sum")).reset_index()


def windows_by(ids: pd.Series, df: pd.DataFrame, windows: dict, count: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, Windowed]:
    """`windowed_aggregates` of the frame's events keyed by `ids`: (each row's key code, the ids
    by code, the windows)."""
    codes, uniques = pd.factorize(ids)
    key = codes.astype(np.int64)
    w = windowed_aggregates(key, df["day"].to_numpy(), df["event_type"].to_numpy(), df["amount"].to_numpy(float), windows, count=count)
    return key, np.asarray(uniques, object), w


def client_activity(df: pd.DataFrame) -> pa.Table:
    """Per-client windowed activity, favourite maison and category, and last purchase time."""
    key, uniques, w = windows_by(df["client_id"], df, CLIENT_WINDOWS)
    etype = df["event_type"].to_numpy()

    # Events in time order; within a second, by product then event type (not by file order: the
    # SQL of atelier.features.sql computes the same rows in BigQuery, which has no row order).
    order = np.lexsort((pd.factorize(df["event_type"], sort=True)[0], pd.factorize(df["product_id"], sort=True)[0], df["ts"].to_numpy(), key))
    # Favourites: the maison (category) with the most engagement so far; ties go to the latest.
    ev = df.iloc[order].assign(key=key[order], weight=[WEIGHT[t] for t in etype[order]])
    span, base = int(ev["day"].max() - ev["day"].min() + 800), int(ev["day"].min() - 400)
    out = {"client_id": uniques[w.key], "event_timestamp": _end_of_day(w.day)}
    for name, v in w.values.items():
        out[name] = v if name.startswith("spend") else v.astype(np.int64)
    for col in ("maison", "category"):
        cw = ev.groupby(["key", col], sort=False)["weight"].cumsum()
        leading = cw.to_numpy() >= cw.groupby(ev["key"].to_numpy()).cummax().to_numpy()
        fav = pd.Series(np.where(leading, ev[col].to_numpy(), None)).groupby(ev["key"].to_numpy()).ffill().to_numpy()
        val, found = _as_of_last(ev["key"].to_numpy(), ev["day"].to_numpy(), fav, w.key, w.day, span, base)
        out[f"favourite_{col}"] = pa.array(np.where(found, val, None), pa.string())
    purchases = ev[ev["event_type"] == "purchase"]
    pk, pd_, pts = purchases["key"].to_numpy(), purchases["day"].to_numpy(), purchases["ts"].to_numpy()
    last, found = _as_of_last(pk, pd_, pts, w.key, w.day, span, base)
    out["last_purchase_at"] = pa.array(np.where(found, last, 0) * 10**6, pa.timestamp("us", "UTC"), mask=~found)
    # What the client bought (for services to leave out) and the products it recently looked at,
    # bought or wished for (the query tower's view of its taste), as of each row's day.
    out["purchased_products"] = _history(purchases, w, span, base, PURCHASE_HISTORY)
    out["recent_products"] = _history(ev, w, span, base, RECENT_HISTORY)
    return _to_arrow(out, schemas.CLIENT_ACTIVITY)


def _history(events: pd.DataFrame, w: Windowed, span: int, base: int, limit: int) -> pa.Array:
    """Per change point, the last `limit` products of the key's events up to that day (oldest first).

    `events` is sorted by (key, time); each row's list is a window on that one sorted array.
    """
    key, day = events["key"].to_numpy(), events["day"].to_numpy()
    hi = np.searchsorted(key * span + (day - base), w.key * span + (w.day - base), side="right")
    first = np.searchsorted(key, w.key, side="left")
    start = np.maximum(first, hi - limit)
    lengths = hi - start
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    take = np.repeat(start - offsets[:-1], lengths) + np.arange(offsets[-1])
    products = pa.array(events["product_id"].to_numpy(dtype=object), pa.string()).take(pa.array(take, pa.int64()))
    return pa.ListArray.from_arrays(pa.array(offsets), products)


def maison_engagement(df: pd.DataFrame) -> pa.Table:
    _, uniques, w = windows_by(df["client_id"], df, ENGAGEMENT_WINDOWS)
    out = {"client_id": uniques[w.key], "event_timestamp": _end_of_day(w.day)}
    for name, v in w.values.items():
        out[name] = v if "spend" in name else v.astype(np.int64)
    return _to_arrow(out, schemas.MAISON_ENGAGEMENT)


def product_popularity(daily: pd.DataFrame) -> pa.Table:
    """Windowed popularity per product from daily counts (product_id, day, event_type, n, amount)."""
    _, uniques, w = windows_by(daily["product_id"], daily, POPULARITY_WINDOWS, count=daily["n"].to_numpy())
    out = {"product_id": uniques[w.key], "event_timestamp": _end_of_day(w.day)}
    for name, v in w.values.items():
        out[name] = v if name.startswith("revenue") else v.astype(np.int64)
    return _to_arrow(out, schemas.PRODUCT_POPULARITY)


def _end_of_day(day: np.ndarray) -> pa.Array:
    """Rows are stamped at the last second of their day: visible only once the day is complete."""
    return pa.array(((day + 1) * DAY - 1) * 10**6, pa.timestamp("us", "UTC"))


def _to_arrow(cols: dict, schema: pa.Schema) -> pa.Table:
    """The computed columns as a table of the declared schema (atelier.features.schemas): a column
    missing, extra or of another type fails here, not in Feast or a model later."""
    if set(cols) != set(schema.names):
        raise ValueError(f"computed columns {sorted(cols)} differ from the schema's {schema.names}")
    arrays = [cols[f.name] if isinstance(cols[f.name], pa.Array) else pa.array(np.asarray(cols[f.name], dtype=object if f.name.endswith("_id") else None))
              for f in schema]
    return pa.Table.from_arrays(arrays, names=schema.names).cast(schema)


def journaled_events(ctx: RegionContext, schema: pa.Schema | None = None) -> pa.Table:
    """The region's events received in real time (atelier.events.journal), each once; in the
    lake's event columns when `schema` is given."""
    from atelier.events import journal

    table = journal.read(ctx)
    return table if schema is None else table.select(schema.names).cast(schema)


def _client_complete(events, streamed: pa.Table):
    """The lake's event parts, each with its clients' streamed events; then the streamed events of
    clients no part holds. Every client's events are in one table (the windows need them all)."""
    left = streamed
    for fragment in events.get_fragments():
        table = fragment.to_table(schema=events.schema)
        if left.num_rows and table.num_rows:
            mine = pc.is_in(left.column("client_id"), value_set=pc.unique(table.column("client_id")))
            table, left = pa.concat_tables([table, left.filter(mine)]), left.filter(pc.invert(mine))
        yield table
    if left.num_rows:
        yield left


def client_recent(streamed: pa.Table) -> pa.Table:
    """The real-time view's offline rows: each client's log of streamed events as of its latest one,
    built by the same merge as the online rows (atelier.events.fresh)."""
    from atelier.events import fresh

    if not streamed.num_rows:
        return schemas.CLIENT_RECENT.empty_table()
    return fresh.table([fresh.row(c, fresh.merge(fresh.Log(), evs)) for c, evs in fresh.by_client(streamed).items()])


class NumpyEngine:
    """The feature tables by this module's pandas/numpy aggregations, a client-complete part of
    the events at a time; popularity and the weekly series from every part's daily counts and
    weekly sums. `atelier features compute`'s default (`--engine local`)."""

    def __init__(self, products: pa.Table, client_country: pa.Table):
        self.products = products.to_pandas().set_index("product_id")
        self.country = client_country.to_pandas().set_index("client_id")["country"]
        self.daily: list[pd.DataFrame] = []
        self.sales: list[pd.DataFrame] = []
        self.clientele: list[pd.DataFrame] = []

    def part(self, table: pa.Table) -> tuple[pa.Table | None, dict[str, pa.Table]]:
        """A part's client_activity (None without engaged events) and its maisons' engagement."""
        df = events_frame(table, self.products)
        engaged = engaged_events(df)
        activity = client_activity(engaged) if len(engaged) else None
        engagement = {m: maison_engagement(part) for m, part in engaged.groupby("maison", sort=False)}
        self.daily.append(daily_counts(df))
        lines = series.sales_lines(df, self.country)
        self.sales.append(series.weekly_sales(lines))
        self.clientele.append(series.weekly_clientele(lines))
        return activity, engagement

    def popularity(self) -> pa.Table:
        if not self.daily:
            return schemas.PRODUCT_POPULARITY.empty_table()
        daily = pd.concat(self.daily).groupby(["product_id", "day", "event_type"], sort=False).sum().reset_index()
        return product_popularity(daily)

    def weekly(self) -> dict[str, pa.Table]:
        out = {}
        for kind, parts in (("sales", self.sales), ("clientele", self.clientele)):
            frame = series.combine(parts, series.KEYS[kind])
            for level in series.LEVELS:
                out[series.table_name(kind, level)] = series.to_table(frame, kind, level)
        return out

    def recent(self, streamed: pa.Table) -> pa.Table:
        return client_recent(streamed)


ENGINES = ("local", "duckdb")


def compute_features(settings: Settings, region: str, progress: Callable[[int], None] = lambda n: None, engine: str = "local",
                     on_total: Callable[[int], None] = lambda n: None) -> dict[str, int]:
    """Compute all of a region's feature tables from its events; swap them in together.
    `progress(n)` after each part of n events; `on_total(n)` once, with the events there are.

    `engine`: "local", this module's pandas/numpy aggregations; "duckdb", the SQL BigQuery runs
    (atelier.features.sql) on DuckDB over the decrypted parts in memory. Same tables, row for row
    (tests/features/test_sql.py); on this machine's two cores the numpy path is 2-2.5x faster
    (benchmarks/pipeline.py)."""
    if engine not in ENGINES:
        raise ValueError(f"no feature engine {engine!r}: one of {ENGINES}")
    ctx = RegionContext.of(settings, region)  # built once, passed down
    region, keys = ctx.region, ctx.keys
    products = read_dataset(settings.paths.catalog("products"), None, columns=["product_id", "maison", "category"])
    # Every maison of the catalog, and every maison whose team registered an engagement view: a
    # maison without events in this region gets an empty table, which its view serves as such.
    from atelier.events import journal
    from atelier.features.repo import engagement_maisons

    maisons = sorted(set(pc.unique(products.column("maison")).to_pylist()) | set(engagement_maisons(settings)))
    events = open_dataset(settings.paths.client_table("events", region), keys)
    client_country = read_dataset(settings.paths.client_table("clients", region), keys, columns=["client_id", "country"])
    if engine == "duckdb":
        from atelier.features.compute_duckdb import DuckDBEngine

        tables = DuckDBEngine(products, client_country, events.schema)
    else:
        tables = NumpyEngine(products, client_country)
    counts: dict[str, int] = {}
    with staged_dir(settings.paths.features(region)) as stage:
        activity = DatasetWriter(stage / "client_activity", keys)
        engagement = {m: DatasetWriter(stage / "maison_engagement" / m, keys) for m in maisons}
        # Parts of the events table are client-complete (see atelier.data.lake), so each is
        # processed on its own and memory stays bounded by the largest part. Events received in
        # real time (the journal, atelier.events) join their client's part.
        if journal.parts_dir(ctx).is_dir():  # a part per batch received, merged before they are read
            with journal.Journal(ctx) as j:
                j.compact()
        streamed = journaled_events(ctx)
        on_total(dataset_info(settings.paths.client_table("events", region))["rows"] + streamed.num_rows)
        for table in _client_complete(events, streamed.select(events.schema.names).cast(events.schema)):
            if not table.num_rows:
                continue
            assert_region_clients(settings, region, table.column("client_id"), where=f"events/region={region}")
            part_activity, part_engagement = tables.part(table)
            if part_activity is not None and part_activity.num_rows:
                activity.write(part_activity)
            for m, rows in part_engagement.items():
                if rows.num_rows:
                    engagement[m].write(rows)
            progress(table.num_rows)
        activity.commit(schemas.CLIENT_ACTIVITY)
        for w in engagement.values():
            w.commit(schemas.MAISON_ENGAGEMENT)
        counts["client_activity"] = activity.rows
        recent = tables.recent(streamed)
        write_dataset(stage / "client_recent", recent, keys, schema=schemas.CLIENT_RECENT)
        counts["client_recent"] = recent.num_rows
        counts["maison_engagement"] = sum(w.rows for w in engagement.values())
        popularity = tables.popularity()
        popularity_writer = DatasetWriter(stage / "product_popularity", keys)
        if popularity.num_rows:
            popularity_writer.write(popularity)
        popularity_writer.commit(schemas.PRODUCT_POPULARITY)
        counts["product_popularity"] = popularity.num_rows
        # The weekly series of the forecast and assortment models (atelier.features.series).
        for name, table in tables.weekly().items():
            writer = DatasetWriter(stage / name, keys)
            if table.num_rows:
                writer.write(table)
            writer.commit(table.schema)
            counts[name] = table.num_rows
    return counts
