"""Feature services: the exact feature sets models are trained on and served with.

A model records the service and the feature list it was trained with; serving reads exactly
that list. Versions live in the names: a change of features is a new service.
"""

from feast import FeatureService

from atelier.features.definitions import tags
from client_features import client_activity, client_attributes, client_profile
from product_features import product_attributes, product_catalog, product_popularity
from sales_features import country_clientele_weekly, country_sales_weekly, store_clientele_weekly, store_sales_weekly

query_tower_v1 = FeatureService(
    name="query_tower_v1",
    features=[v for v in (client_profile, client_attributes, client_activity) if v is not None],
    description="What the two-tower query tower reads about a client.",
    tags=tags(owner="group", sharing="shared", sensitivity="confidential"),
)

candidate_tower_v1 = FeatureService(
    name="candidate_tower_v1",
    features=[v for v in (product_catalog, product_attributes) if v is not None],
    description="What the two-tower candidate tower reads about a product.",
    tags=tags(owner="group", sharing="shared", sensitivity="public"),
)

popularity_v1 = FeatureService(
    name="popularity_v1",
    features=[product_popularity],
    description="Regional popularity: the baseline and the cold-start fallback.",
    tags=tags(owner="group", sharing="shared", sensitivity="internal"),
)

weekly_sales_v1 = FeatureService(
    name="weekly_sales_v1",
    features=[country_sales_weekly, store_sales_weekly, country_clientele_weekly, store_clientele_weekly],
    description="Weekly sales and clientele per country and store: the forecast's and the assortment's series.",
    tags=tags(owner="group", sharing="shared", sensitivity="internal"),
)
