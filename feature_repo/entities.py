"""Entities: the two things features are about. Both are shared by every maison."""

from feast import Entity, ValueType

from atelier.features.definitions import tags

# A client of the group. Ids are minted per region (EU…, US…, AP…): see atelier/regions.json.
client = Entity(
    name="client",
    join_keys=["client_id"],
    value_type=ValueType.STRING,
    description="A client of any maison; lives in one region only.",
    tags=tags(owner="group", sharing="shared", sensitivity="confidential"),
)

# A product of any maison. The catalog is global: the same in every region.
product = Entity(
    name="product",
    join_keys=["product_id"],
    value_type=ValueType.STRING,
    description="A product of any maison.",
    tags=tags(owner="group", sharing="shared", sensitivity="public"),
)
