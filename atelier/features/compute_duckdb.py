"""The feature tables computed on this machine by the SQL BigQuery runs, on DuckDB.

`atelier features compute -r R --engine duckdb`: the pipeline's queries (atelier.features.sql, in
BigQuery's dialect, transpiled by sqlglot) over the region's events decrypted into Arrow, in
memory: DuckDB may not spill, so no plaintext file is written. The events come a client-complete
part at a time, as for the numpy path (atelier.features.pipeline.compute_features, which writes
what this returns, encrypted): the client tables per part, every maison's windows once per part
and each maison's table cut from them (as BigQuery does, `compute_bigquery.STAGING`), then
popularity and the weekly series once over every part's events, narrowed to the columns their
queries read.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from atelier.features import schemas, series, sql
from atelier.features.compute_bigquery import STAGING

# What popularity's query reads of every event; the weekly series read purchases only.
_POPULARITY_COLUMNS = ["product_id", "event_timestamp", "event_type", "amount"]


class DuckDBEngine:
    def __init__(self, products: pa.Table, client_country: pa.Table, events: pa.Schema):
        self.products, self.clients, self.events = products, client_country, events
        self.narrow: list[pa.Table] = []
        self.purchases: list[pa.Table] = []

    def part(self, table: pa.Table) -> tuple[pa.Table, dict[str, pa.Table]]:
        """A part's client_activity and its maisons' engagement, in their schemas."""
        activity = sql.run(sql.client_activity(), events=table, products=self.products).cast(schemas.CLIENT_ACTIVITY)
        staging = {STAGING: sql.run(sql.maison_engagement_windows(), events=table, products=self.products)}
        maisons = [m for m in pc.unique(staging[STAGING].column("maison")).to_pylist() if m is not None]
        engagement = {m: sql.run(sql.maison_engagement(m, windows=STAGING), events=table, tables=staging).cast(schemas.MAISON_ENGAGEMENT)
                      for m in maisons}
        self.narrow.append(table.select(_POPULARITY_COLUMNS))
        self.purchases.append(table.filter(pc.equal(table.column("event_type"), "purchase")))
        return activity, engagement

    def popularity(self) -> pa.Table:
        if not self.narrow:
            return schemas.PRODUCT_POPULARITY.empty_table()
        events = pa.concat_tables(self.narrow)
        self.narrow = []
        return sql.run(sql.product_popularity(), events=events).cast(schemas.PRODUCT_POPULARITY)

    def weekly(self) -> dict[str, pa.Table]:
        bought = pa.concat_tables(self.purchases) if self.purchases else self.events.empty_table()
        self.purchases = []
        return {series.table_name(kind, level): sql.run(sql.weekly_table(kind, level), events=bought, clients=self.clients).cast(series.schema(kind, level))
                for kind in series.TABLES for level in series.LEVELS}

    def recent(self, streamed: pa.Table) -> pa.Table:
        return sql.run(sql.client_recent(), events=self.events.empty_table(), streamed=streamed).cast(schemas.CLIENT_RECENT)
