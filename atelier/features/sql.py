"""The feature pipeline's aggregations as SQL in BigQuery's dialect: one source, two engines.

BigQuery runs it in the region's dataset where one machine is not enough (`atelier features sql`
writes the scripts); DuckDB runs it here, transpiled by sqlglot, over the decrypted Arrow tables
in memory (`run`), which is how the tests hold the SQL to the pandas/numpy pipeline
(atelier.features.pipeline, atelier.features.series) row for row. The windows and the tables'
columns come from atelier.features.schemas and atelier.features.series, stated once there.

What each query computes, and why it is shaped so:

* **Windowed aggregates** (`windowed`): a row per key and change point (a day with an event, or
  the day an event leaves a window), each window's count or sum as of the end of that day. Events
  are first summed per key and day; the change points are those days and each day plus a width;
  each window is then a `RANGE` frame over the points, which holds every event day inside it
  because every event day is itself a point.
* **The client_activity table** (`client_activity`), whole: the windows above, and the
  favourites, last purchase and product lists as of each change point (see the function). A
  client's events alike to the second are taken by product, then event type, as the pipeline
  takes them: BigQuery has no file order to fall back on.
* **Weekly series** (`weekly_sales`, `weekly_clientele`): purchases as sales lines (the line's
  country, else its client's; units default to 1; revenue to 0), once per level where they have a
  location, summed per location and product (or location) and week. Weeks start on Monday.

Integer division is written `(DIV((a), (b)))`: sqlglot 30 transpiles `DIV(a + 3, 7)` to DuckDB as
`a + 3 // 7`, dropping the parentheses its operator needs; the test of the weekly series catches
that if the parentheses go.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa
import sqlglot

from atelier.features import series
from atelier.features.pipeline import WEIGHT
from atelier.features.schemas import (
    CLIENT_WINDOWS,
    ENGAGEMENT_WINDOWS,
    FRESH_LOG,
    POPULARITY_WINDOWS,
    PURCHASE_HISTORY,
    RECENT_HISTORY,
    SESSION_GAP_S,
)

DAY_US = 86_400 * 10**6
# The lake's optional event columns: a lake without them reads them as NULL.
OPTIONAL_EVENT_COLUMNS = {"quantity": pa.float64(), "country": pa.string(), "store_id": pa.string()}


def div(a: str, b: str) -> str:
    """Integer division, parenthesized so that every engine's operator keeps its operands."""
    return f"(DIV(({a}), ({b})))"


def _day(ts: str) -> str:
    return div(f"UNIX_MICROS({ts})", str(DAY_US))


def windowed(source: str, keys: list[str], windows: dict) -> str:
    """Windowed aggregates of `source` (a query with `keys`, `day`, `event_type` and `amount`, a
    row per event) at each change point."""
    types = sorted({ev for ev, _, _ in windows.values()})
    k = ", ".join(keys)
    per_day = ",\n    ".join(
        f"COUNTIF(event_type = '{t}') AS n_{t}, SUM(IF(event_type = '{t}', COALESCE(amount, 0), 0)) AS amount_{t}" for t in types)
    expiries = "\n".join(f"  UNION DISTINCT SELECT {k}, day + {w} AS day FROM daily WHERE n_{ev} > 0"
                         for ev, w in sorted({(ev, w) for ev, _, w in windows.values()}))
    frames = ",\n  ".join(
        f"CAST(SUM(COALESCE(d.{'n' if what == 'count' else 'amount'}_{ev}, 0)) OVER "
        f"(PARTITION BY {', '.join(f'p.{c}' for c in keys)} ORDER BY p.day RANGE BETWEEN {w - 1} PRECEDING AND CURRENT ROW) "
        f"AS {'INT64' if what == 'count' else 'FLOAT64'}) AS {name}"
        for name, (ev, what, w) in windows.items())
    on = " AND ".join(f"d.{c} = p.{c}" for c in [*keys, "day"])
    return f"""WITH daily AS (
  SELECT {k}, day,
    {per_day}
  FROM ({source})
  GROUP BY {k}, day
),
points AS (
  SELECT {k}, day FROM daily
{expiries}
)
SELECT {', '.join(f'p.{c}' for c in keys)}, p.day,
  {frames}
FROM points AS p LEFT JOIN daily AS d ON {on}
ORDER BY {', '.join(f'p.{c}' for c in keys)}, p.day"""


def _events(where: str = "TRUE") -> str:
    return f"SELECT *, {_day('event_timestamp')} AS day FROM events WHERE {where}"


def _engaged() -> str:
    """As atelier.features.pipeline.engaged_events: a client's own purchases, wishlist adds and views."""
    return _events(f"client_id IS NOT NULL AND event_type IN ({', '.join(repr(t) for t in WEIGHT)})")


def client_activity_windows() -> str:
    return windowed(_engaged(), ["client_id"], CLIENT_WINDOWS)


ORDER = "ts, product_id, event_type"  # a client's events in time order; within a second, by product then type (as the pipeline)


def _running(expression: str, partition: str = "client_id") -> str:
    """`expression` over the client's events up to this one, in the order of their `rank`: one
    numbering for every window, since events alike to the second, product and type may come in
    any order under `ORDER`, and two windows may not take them in the same one."""
    return f"{expression} OVER (PARTITION BY {partition} ORDER BY rank ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)"


def client_activity() -> str:
    """The whole `client_activity` table, as atelier.features.pipeline.client_activity computes it:
    the windows at each change point, and as of the end of that day the favourite maison and
    category (the most engagement so far, weighted as `WEIGHT`; ties go to the one that reached it
    latest), the last purchase time, and the last products bought and engaged with, oldest first.

    Favourites: a running weight per client and maison (category); an event leads where its
    maison's running weight is the client's running maximum, and the favourite is the maison of
    the latest leading event. Histories: each event's rank in the client's order (and each
    purchase's among purchases); a change point holds the ranks up to its day's last event, and
    its list is the events of the last `RECENT_HISTORY` (`PURCHASE_HISTORY`) ranks. A list is built
    once per day with events (per day with purchases), by looking up each of the ranks it holds
    (an equality join), and change points find theirs by that day's last rank: a range join of
    every change point to its client's events cost DuckDB 10 of the 12.6 s of this table at
    100k clients, and grows with the events each client has."""
    weight = "CASE event_type " + " ".join(f"WHEN '{t}' THEN {w}" for t, w in WEIGHT.items()) + " END"
    windows = ", ".join(f"a.{name}" for name in CLIENT_WINDOWS)
    favourites = ",\n    ".join(
        f"IF({c} IS NULL, NULL, {_running('SUM(weight)', f'client_id, {c}')}) AS weight_{c}" for c in ("maison", "category"))
    tops = ",\n    ".join(f"{_running(f'MAX(weight_{c})')} AS top_{c}" for c in ("maison", "category"))
    leaders = ",\n    ".join(f"{_running(f'LAST_VALUE(IF(weight_{c} >= top_{c}, {c}, NULL) IGNORE NULLS)')} AS favourite_{c}" for c in ("maison", "category"))
    carried = ",\n    ".join(f"LAST_VALUE(d.{c} IGNORE NULLS) OVER (PARTITION BY w.client_id ORDER BY w.day ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS {c}"
                             for c in ("hi", "purchase_hi", "last_purchase", "favourite_maison", "favourite_category"))
    return f"""WITH w AS ({client_activity_windows()}),
ev AS (
  SELECT e.client_id, e.product_id, e.event_type, e.day, {div('UNIX_MICROS(e.event_timestamp)', '1000000')} AS ts,
    p.maison, p.category, {weight} AS weight
  FROM ({_engaged()}) AS e LEFT JOIN products AS p ON p.product_id = e.product_id
),
numbered AS (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY client_id ORDER BY {ORDER}) AS rank FROM ev
),
ranked AS (
  SELECT *,
    IF(event_type = 'purchase', ROW_NUMBER() OVER (PARTITION BY client_id, event_type = 'purchase' ORDER BY rank), NULL) AS purchase_rank,
    {favourites}
  FROM numbered
),
tops AS (
  SELECT *,
    {tops},
    {_running('MAX(purchase_rank)')} AS purchase_hi,
    {_running("MAX(IF(event_type = 'purchase', ts, NULL))")} AS last_purchase,
    MAX(rank) OVER (PARTITION BY client_id, day) AS day_hi
  FROM ranked
),
led AS (
  SELECT *,
    {leaders}
  FROM tops
),
daily AS (
  SELECT client_id, day, rank AS hi, purchase_hi, last_purchase, favourite_maison, favourite_category FROM led WHERE rank = day_hi
),
a AS (
  SELECT w.*,
    {carried}
  FROM w LEFT JOIN daily AS d ON d.client_id = w.client_id AND d.day = w.day
),
recent AS (
  SELECT d.client_id, d.hi, ARRAY_AGG(r.product_id ORDER BY r.rank) AS products
  FROM daily AS d CROSS JOIN UNNEST(GENERATE_ARRAY(0, LEAST({RECENT_HISTORY} - 1, d.hi - 1))) AS back
  JOIN ranked AS r ON r.client_id = d.client_id AND r.rank = d.hi - back
  GROUP BY d.client_id, d.hi
),
bought AS (
  SELECT d.client_id, d.purchase_hi, ARRAY_AGG(r.product_id ORDER BY r.purchase_rank) AS products
  FROM (SELECT DISTINCT client_id, purchase_hi FROM daily WHERE purchase_hi IS NOT NULL) AS d
  CROSS JOIN UNNEST(GENERATE_ARRAY(0, LEAST({PURCHASE_HISTORY} - 1, d.purchase_hi - 1))) AS back
  JOIN ranked AS r ON r.client_id = d.client_id AND r.purchase_rank = d.purchase_hi - back
  GROUP BY d.client_id, d.purchase_hi
)
SELECT a.client_id, {_end_of_day('a.day')} AS event_timestamp, {windows},
  a.favourite_maison, a.favourite_category, TIMESTAMP_SECONDS(a.last_purchase) AS last_purchase_at,
  COALESCE(b.products, ARRAY<STRING>[]) AS purchased_products, COALESCE(r.products, ARRAY<STRING>[]) AS recent_products
FROM a
LEFT JOIN bought AS b ON b.client_id = a.client_id AND b.purchase_hi = a.purchase_hi
LEFT JOIN recent AS r ON r.client_id = a.client_id AND r.hi = a.hi
ORDER BY a.client_id, a.day"""


def maison_engagement_windows() -> str:
    source = f"SELECT e.*, p.maison FROM ({_engaged()}) AS e JOIN products AS p ON p.product_id = e.product_id"
    return windowed(source, ["maison", "client_id"], ENGAGEMENT_WINDOWS)


def _end_of_day(day: str) -> str:
    """A row's time: the last second of its day, as the pipeline stamps it (visible once the day is complete)."""
    return f"TIMESTAMP_MICROS(({day} + 1) * {DAY_US} - 1000000)"


def _feature_table(windows: str, key: str, names) -> str:
    """A windows query as its feature table: the key, the row's time, the windows."""
    return f"""SELECT {key}, {_end_of_day('day')} AS event_timestamp, {', '.join(names)}
FROM ({windows})
ORDER BY {key}, day"""


def maison_engagement(maison: str, windows: str | None = None) -> str:
    """The `maison_engagement` table of one maison (Feast reads one per maison view): its clients'
    windows, from their events with that maison's products; or, given `windows` (a table that
    `maison_engagement_windows` wrote, every maison at once), that table's rows of the maison,
    which reads the events once for all maisons rather than once each."""
    if "'" in maison or "\\" in maison:
        raise ValueError(f"not a maison id: {maison!r}")
    if windows is not None:
        return _feature_table(f"SELECT * FROM {windows} WHERE maison = '{maison}'", "client_id", ENGAGEMENT_WINDOWS)
    source = f"SELECT e.* FROM ({_engaged()}) AS e JOIN products AS p ON p.product_id = e.product_id WHERE p.maison = '{maison}'"
    return _feature_table(windowed(source, ["client_id"], ENGAGEMENT_WINDOWS), "client_id", ENGAGEMENT_WINDOWS)


def product_popularity() -> str:
    """The `product_popularity` table."""
    return _feature_table(product_popularity_windows(), "product_id", POPULARITY_WINDOWS)


def product_popularity_windows() -> str:
    return windowed(_events(), ["product_id"], POPULARITY_WINDOWS)


def _sales_lines() -> str:
    """Purchases as sales lines, once per level where they have a location."""
    lines = f"""SELECT e.client_id, e.product_id, {div(div('UNIX_MICROS(e.event_timestamp)', str(DAY_US)) + ' + 3', '7')} AS week,
    COALESCE(e.country, c.country) AS country, e.store_id, COALESCE(CAST(e.quantity AS FLOAT64), 1.0) AS units,
    COALESCE(CAST(e.amount AS FLOAT64), 0.0) AS revenue, {div('UNIX_MICROS(e.event_timestamp)', '1000000')} AS ts
  FROM events AS e LEFT JOIN clients AS c ON c.client_id = e.client_id
  WHERE e.event_type = 'purchase'"""
    return f"""WITH lines AS ({lines}),
located AS (
  SELECT 'country' AS level, country AS location, * EXCEPT (country, store_id) FROM lines WHERE country IS NOT NULL
  UNION ALL
  SELECT 'store' AS level, store_id AS location, * EXCEPT (country, store_id) FROM lines WHERE store_id IS NOT NULL
)"""


def weekly_sales() -> str:
    return f"""{_sales_lines()}
SELECT level, location, product_id, week, SUM(units) AS units, SUM(revenue) AS revenue, COUNT(*) AS orders
FROM located
GROUP BY level, location, product_id, week
ORDER BY level, location, product_id, week"""


def weekly_clientele() -> str:
    return f"""{_sales_lines()},
firsts AS (SELECT client_id, MIN(week) AS first_week FROM located WHERE client_id IS NOT NULL GROUP BY client_id)
SELECT l.level, l.location, l.week, SUM(l.units) AS units, SUM(l.revenue) AS revenue, MAX(l.ts) AS last_sale,
  COUNT(DISTINCT l.client_id) AS clients,
  COUNT(DISTINCT IF(l.week = f.first_week, l.client_id, NULL)) AS new_clients
FROM located AS l LEFT JOIN firsts AS f ON f.client_id = l.client_id
GROUP BY l.level, l.location, l.week
ORDER BY l.level, l.location, l.week"""


def client_recent() -> str:
    """The real-time view's offline rows (`client_recent`), as atelier.features.pipeline.client_recent
    builds them with atelier.events.fresh: per client, its last `FRESH_LOG` events received in
    real time (the journal, loaded as `streamed_events`), each id once, oldest first; the row's time
    is its last event's; the last purchase among them; and the events of its last session (no gap
    over `SESSION_GAP_S`), counted back from the last one."""
    gap = SESSION_GAP_S * 10**6
    lists = ",\n  ".join(f"ARRAY_AGG({column} ORDER BY back DESC) AS {name}"
                          for column, name in (("event_id", "event_ids"), ("product_id", "event_products"), ("event_type", "event_types"), ("t", "event_times")))
    return f"""WITH once AS (
  SELECT client_id, event_id, product_id, event_type, UNIX_MICROS(event_timestamp) AS t,
    ROW_NUMBER() OVER (PARTITION BY event_id ORDER BY received_at) AS copy
  FROM streamed_events
),
kept AS (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY client_id ORDER BY t DESC, event_id DESC, product_id DESC, event_type DESC) AS back
  FROM once WHERE copy = 1
),
gaps AS (
  SELECT *, LAG(t) OVER (PARTITION BY client_id ORDER BY back) - t > {gap} AS broken
  FROM kept WHERE back <= {FRESH_LOG}
)
SELECT client_id, TIMESTAMP_MICROS(MAX(t)) AS event_timestamp,
  {lists},
  TIMESTAMP_MICROS(MAX(IF(event_type = 'purchase', t, NULL))) AS last_purchase_at,
  COALESCE(MIN(IF(broken, back, NULL)) - 1, COUNT(*)) AS session_events
FROM gaps
GROUP BY client_id
ORDER BY client_id"""


def weekly_table(kind: str, level: str) -> str:
    """A weekly series' feature table at one level (`country_sales_weekly`, ...): its columns as
    atelier.features.series states them, the location under the level's join key, each row
    stamped at the last second of its week."""
    query = {"sales": weekly_sales, "clientele": weekly_clientele}[kind]()
    start = f"(week * 7 - 3) * {86_400}"
    exprs = {series.KEY[level]: "location", "week_start": f"TIMESTAMP_SECONDS({start})",
             "event_timestamp": f"TIMESTAMP_SECONDS({start} + {series.WEEK - 1})", "last_sale_at": "TIMESTAMP_SECONDS(last_sale)"}
    columns = ", ".join(f"{exprs.get(f.name, f.name)} AS {f.name}" for f in series.schema(kind, level))
    keys = ", ".join(k for k in series.KEYS[kind] if k != "level")
    return f"""SELECT {columns}
FROM ({query})
WHERE level = '{level}'
ORDER BY {keys}"""


QUERIES = {
    "client_activity": client_activity,
    "client_recent": client_recent,
    "product_popularity": product_popularity,
    "client_activity_windows": client_activity_windows,
    "maison_engagement_windows": maison_engagement_windows,
    "product_popularity_windows": product_popularity_windows,
    "weekly_sales": weekly_sales,
    "weekly_clientele": weekly_clientele,
    **{series.table_name(kind, level): (lambda kind=kind, level=level: weekly_table(kind, level)) for kind in series.TABLES for level in series.LEVELS},
}


def scripts(maisons: list[str]) -> dict[str, str]:
    """Every query by name, with one `maison_engagement_<maison>` per maison given (the maisons
    whose engagement view the feature repository defines): the names are the BigQuery tables
    Feast's sources read where a query computes a whole feature table."""
    from atelier.features.definitions import bigquery_table

    out = {name: build() for name, build in QUERIES.items()}
    for maison in maisons:
        out[bigquery_table(f"features/{{region}}/maison_engagement/{maison}")] = maison_engagement(maison)
    return out


def for_bigquery(sql: str, dataset: str) -> str:
    """A query as BigQuery runs it in the region's dataset: every table that is not a CTE is
    qualified with `dataset` (the Terraform output `bigquery_dataset`)."""
    from sqlglot import exp

    tree = sqlglot.parse_one(sql, read="bigquery")
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    for table in tree.find_all(exp.Table):
        if not table.args.get("db") and table.name not in ctes:
            table.set("db", exp.to_identifier(dataset))
    return tree.sql(dialect="bigquery", pretty=True)


def transpile(sql: str, dialect: str = "duckdb") -> str:
    """The BigQuery source in another engine's dialect (sqlglot raises on SQL it cannot parse)."""
    return sqlglot.transpile(sql, read="bigquery", write=dialect, unsupported_level=sqlglot.ErrorLevel.RAISE)[0]


def run(sql: str, *, events: pa.Table, products: pa.Table | None = None, clients: pa.Table | None = None, streamed: pa.Table | None = None,
        tables: dict[str, pa.Table] | None = None) -> pa.Table:
    """Run a BigQuery-dialect query on DuckDB over Arrow tables, in memory. DuckDB may not spill to
    disk: its temporary files would hold client data in plain text. `tables`: more inputs by name,
    such as a staging table an earlier query wrote (BigQuery's `maison_engagement_windows`)."""
    for name, kind in OPTIONAL_EVENT_COLUMNS.items():
        if name not in events.column_names:
            events = events.append_column(name, pa.nulls(events.num_rows, kind))
    con = duckdb.connect(":memory:", config={"max_temp_directory_size": "0KB"})
    try:
        con.register("events", events)
        con.register("products", products if products is not None else pa.table({"product_id": pa.array([], pa.string()), "maison": pa.array([], pa.string())}))
        if streamed is None:
            from atelier.events.journal import SCHEMA

            streamed = SCHEMA.empty_table()
        con.register("streamed_events", streamed)
        con.register("clients", clients if clients is not None else pa.table({"client_id": pa.array([], pa.string()), "country": pa.array([], pa.string())}))
        for name, table in (tables or {}).items():
            con.register(name, table)
        return con.sql(transpile(sql)).to_arrow_table()
    finally:
        con.close()
