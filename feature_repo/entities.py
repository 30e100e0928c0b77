"""Entities: what features are about (clients, products, and where sales happen). All shared by every maison."""

from feast import Entity, ValueType

from atelier.features.definitions import tags

# A client of the group. Ids are the client system's own; a client's region comes from its country.
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

# Where sales happen: a country (its ISO alpha-2 code) and a store. A region holds only its own:
# its countries' series, and the stores in its countries (the residency audit checks both).
country = Entity(
    name="country",
    join_keys=["country_code"],
    value_type=ValueType.STRING,
    description="A country, by its ISO 3166 alpha-2 code.",
    tags=tags(owner="group", sharing="shared", sensitivity="public"),
)

store = Entity(
    name="store",
    join_keys=["store_id"],
    value_type=ValueType.STRING,
    description="A store of any maison; in the region of its country.",
    tags=tags(owner="group", sharing="shared", sensitivity="public"),
)
