"""The columns of every feature table the pipeline writes, stated once, with their descriptions.

The pipeline (atelier.features.pipeline, atelier.features.series) writes its tables with these
schemas, and the Feast views in `feature_repo/` take their fields from them
(`definitions.fields`): a column added or renamed here changes both, and its description is what
`atelier features list` and Feast's UI show. Windowed aggregates are described from their
definitions (event type, value, days), so a new window is described without another edit.
"""

from __future__ import annotations

import pyarrow as pa

TS = pa.timestamp("us", "UTC")
PURCHASE_HISTORY = 100  # purchased_products keeps the last this many, oldest first
RECENT_HISTORY = 20  # recent_products: the last products viewed, wished for or bought
FRESH_LOG = 50  # client_recent: the client's last events received in real time
SESSION_GAP_S = 30 * 60  # a session ends after 30 minutes without an event

# feature -> (event type, value, window in days)
CLIENT_WINDOWS = {
    "purchases_30d": ("purchase", "count", 30),
    "purchases_90d": ("purchase", "count", 90),
    "purchases_365d": ("purchase", "count", 365),
    "spend_30d": ("purchase", "amount", 30),
    "spend_90d": ("purchase", "amount", 90),
    "spend_365d": ("purchase", "amount", 365),
    "views_30d": ("view", "count", 30),
    "views_90d": ("view", "count", 90),
    "wishlist_90d": ("wishlist", "count", 90),
}
POPULARITY_WINDOWS = {
    "purchases_7d": ("purchase", "count", 7),
    "purchases_30d": ("purchase", "count", 30),
    "purchases_90d": ("purchase", "count", 90),
    "purchases_365d": ("purchase", "count", 365),
    "views_30d": ("view", "count", 30),
    "wishlist_30d": ("wishlist", "count", 30),
    "revenue_30d": ("purchase", "amount", 30),
}
# A maison's own figures; named apart from client_activity's so a service can hold both.
ENGAGEMENT_WINDOWS = {
    "maison_purchases_365d": ("purchase", "count", 365),
    "maison_spend_365d": ("purchase", "amount", 365),
    "maison_views_90d": ("view", "count", 90),
}

_MEASURES = {("purchase", "count"): "purchases", ("purchase", "amount"): "amount spent on purchases",
             ("view", "count"): "product views", ("wishlist", "count"): "wishlist additions"}


def field(name: str, type_: pa.DataType, description: str = "") -> pa.Field:
    """A column with its description (kept in the field's metadata)."""
    return pa.field(name, type_, metadata={"description": description} if description else None)


def description(f: pa.Field) -> str:
    return (f.metadata or {}).get(b"description", b"").decode()


def window_fields(windows: dict[str, tuple[str, str, int]], whose: str) -> list[pa.Field]:
    """Windowed aggregates: counts as int64, amounts as float64, each described from its definition."""
    out = []
    for name, (event, value, days) in windows.items():
        measure = _MEASURES.get((event, value), f"{event} {value}")
        out.append(field(name, pa.float64() if value == "amount" else pa.int64(),
                         f"{measure.capitalize()} {whose}, in the {days} days up to the row's date."))
    return out


CLIENT_ACTIVITY = pa.schema([
    field("client_id", pa.string()),
    field("event_timestamp", TS),
    *window_fields(CLIENT_WINDOWS, "by the client, across maisons"),
    field("favourite_maison", pa.string(), "The maison the client engaged with most (purchases weigh most, then wishlist, then views)."),
    field("favourite_category", pa.string(), "The product category the client engaged with most, weighted as favourite_maison."),
    field("last_purchase_at", TS, "Time of the client's latest purchase."),
    # What the client owns (services leave it out) and last looked at, bought or wished for.
    field("purchased_products", pa.list_(pa.string()), f"Products the client bought, oldest first (the last {PURCHASE_HISTORY})."),
    field("recent_products", pa.list_(pa.string()), f"Products the client last viewed, wished for or bought, oldest first (the last {RECENT_HISTORY})."),
])

# The real-time view (a Feast push view, fed by POST /events: atelier.events): the client's last
# events as they arrive, oldest first, one list per attribute. Serving lays them over
# client_activity (atelier.events.fresh.overlay) until the batch features hold them too.
CLIENT_RECENT = pa.schema([
    field("client_id", pa.string()),
    field("event_timestamp", TS),
    field("event_ids", pa.list_(pa.string()), f"Ids of the client's last events received in real time, oldest first (the last {FRESH_LOG})."),
    field("event_products", pa.list_(pa.string()), "The product of each of those events."),
    field("event_types", pa.list_(pa.string()), "The type of each of those events (purchase, view, wishlist, return)."),
    field("event_times", pa.list_(pa.int64()), "The time of each of those events, in microseconds since 1970-01-01 UTC."),
    field("last_purchase_at", TS, "Time of the client's latest purchase received in real time."),
    field("session_events", pa.int64(), f"Events in the client's latest session (no gap over {SESSION_GAP_S // 60} minutes), up to its last event."),
])

MAISON_ENGAGEMENT = pa.schema([
    field("client_id", pa.string()),
    field("event_timestamp", TS),
    *window_fields(ENGAGEMENT_WINDOWS, "by the client, of the maison's products"),
])

PRODUCT_POPULARITY = pa.schema([
    field("product_id", pa.string()),
    field("event_timestamp", TS),
    *window_fields(POPULARITY_WINDOWS, "of the product by the region's clients"),
])
