"""Product features: the global catalog, its attributes, and popularity in each region."""

from feast import FeatureView, Field
from feast.types import String

from atelier.features import schemas
from atelier.features.definitions import NO_TTL, attribute_view, fields, source, tags
from entities import product

# The catalog is the same in every region; a product is known from its launch date.
products_source = source(
    name="products_source",
    table="lake/catalog/products",
    timestamp_field="catalog_timestamp",
    description="The group's product catalog.",
)

popularity_source = source(
    name="product_popularity_source",
    table="features/{region}/product_popularity",
    timestamp_field="event_timestamp",
    description="Aggregates of the region's events per product (no client data).",
)

product_catalog = FeatureView(
    name="product_catalog",
    entities=[product],
    ttl=NO_TTL,
    schema=[Field(name="maison", dtype=String, description="The maison that makes the product."),
            Field(name="category", dtype=String, description="The product's category (bags, fragrance, watches, ...).")],
    source=products_source,
    online=True,
    description="Which maison makes the product and what kind of product it is.",
    tags=tags(owner="group", sharing="shared", sensitivity="public"),
)

# Collection, price, material, colour, ...: every extra catalog column, typed from the manifest.
product_attributes = attribute_view(
    "product_attributes", product, products_source, "products", owner="group", sharing="shared", sensitivity="public"
)

product_popularity = FeatureView(
    name="product_popularity",
    entities=[product],
    ttl=NO_TTL,
    schema=fields(schemas.PRODUCT_POPULARITY, skip=("product_id", "event_timestamp")),
    source=popularity_source,
    online=True,
    description="How much the product is bought, viewed and wished for in this region lately.",
    tags=tags(owner="group", sharing="shared", sensitivity="internal"),
)
