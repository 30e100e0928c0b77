"""Weekly sales per product and country (and store), and the clientele of each: the forecast's series.

Computed by `atelier features compute` (atelier.features.series, where their columns are stated
once: these views are derived from that schema). A row is stamped at the end of its week, so a
point-in-time read sees whole weeks only; online, each series holds its latest week with sales.
Sales figures, no client: shared across maisons, internal.
"""

from feast import FeatureView

from atelier.features import series
from atelier.features.definitions import NO_TTL, fields, source, tags
from entities import country, product, store

ENTITIES = {"country": country, "store": store}


def _view(kind: str, level: str) -> FeatureView:
    name = series.table_name(kind, level)
    keys = {series.KEY[level], "product_id", "event_timestamp"}
    schema = fields(series.schema(kind, level), skip=tuple(keys))
    what = "units, revenue and sales lines of each product" if kind == "sales" else "units, revenue, clients and first-time clients"
    return FeatureView(
        name=name,
        entities=[ENTITIES[level], product] if kind == "sales" else [ENTITIES[level]],
        ttl=NO_TTL,
        schema=schema,
        source=source(name=f"{name}_source", table=f"features/{{region}}/{name}", timestamp_field="event_timestamp",
                      description=f"Weekly {kind} per {level} of the region."),
        online=True,
        description=f"Per {level} and week: {what}.",
        tags=tags(owner="group", sharing="shared", sensitivity="internal"),
    )


country_sales_weekly = _view("sales", "country")
store_sales_weekly = _view("sales", "store")
country_clientele_weekly = _view("clientele", "country")
store_clientele_weekly = _view("clientele", "store")
