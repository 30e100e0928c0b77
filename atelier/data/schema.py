"""The lake's contract: required columns per table, and the manifest of extra attribute columns.

Imported files need only the required columns; every other column is an attribute that becomes a
feature. `infer_attributes` decides categorical or numeric once, and the manifest records it so
that the feature repository, training and serving all agree without code changes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.types as pat

# A `return` (a cancellation or a returned item) is kept as what it is: never counted as a purchase.
EVENT_TYPES = ("purchase", "view", "wishlist", "return")

# Beyond these, a column is an attribute. `countries` (where a product is sold), `updated_at`
# (when a client's profile took its values) and `launch_date` (from when a product exists) are
# optional columns with a meaning of their own; the platform fills them when absent.
REQUIRED = {
    "clients": {"client_id": "string", "country": "string"},
    "products": {"product_id": "string", "maison": "string", "category": "string"},
    "events": {"client_id": "string", "product_id": "string", "event_type": "string", "event_timestamp": "timestamp"},
}
OPTIONAL = {
    "clients": {"updated_at": "timestamp"},
    "products": {"launch_date": "timestamp", "countries": "list<string>"},
    "events": {"amount": "numeric", "quantity": "numeric", "channel": "string", "store_id": "string", "country": "string"},
}
# Columns the platform adds when writing the lake.
DERIVED = {"clients": ("region", "profile_timestamp"), "products": ("catalog_timestamp",), "events": ()}
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


@dataclass(frozen=True)
class Attribute:
    name: str
    kind: str  # "categorical" or "numeric"

    def to_json(self) -> dict:
        return {"name": self.name, "kind": self.kind}


def attribute_columns(table_name: str, schema: pa.Schema) -> list[str]:
    known = set(REQUIRED[table_name]) | set(OPTIONAL[table_name]) | set(DERIVED[table_name])
    return [n for n in schema.names if n not in known]


def infer_attributes(table_name: str, table: pa.Table) -> list[Attribute]:
    """Numbers are numeric; strings, booleans and low-cardinality integers are categorical."""
    out = []
    for name in attribute_columns(table_name, table.schema):
        col = table.column(name)
        t = col.type
        if pat.is_floating(t) or pat.is_decimal(t):
            kind = "numeric"
        elif pat.is_integer(t):
            distinct = pc.count_distinct(col).as_py()
            kind = "categorical" if distinct <= 32 and distinct < max(2, table.num_rows // 4) else "numeric"
        elif pat.is_timestamp(t) or pat.is_date(t):
            kind = "numeric"  # stored as days since epoch
        else:
            kind = "categorical"
        out.append(Attribute(name, kind))
    return out


def normalize_attribute(col: pa.ChunkedArray, kind: str) -> pa.ChunkedArray:
    """The stored form of an attribute: strings for categorical, float64 for numeric."""
    if kind == "categorical":
        return pc.cast(col, pa.string())
    if pat.is_timestamp(col.type) or pat.is_date(col.type):
        days = pc.divide(pc.cast(pc.cast(col, pa.timestamp("s")), pa.int64()), 86400)
        return pc.cast(days, pa.float64())
    return pc.cast(col, pa.float64())
