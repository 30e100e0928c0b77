"""Who may do what, as Feast permissions (enforced on the platform's apply, online and offline paths).

Roles: `ml-engineer` applies and reads everything; `maison:<slug>` reads shared features and its
own private ones; `service:recommender` (the regional bentos) reads shared features and writes
the real-time view of client events. Nobody else writes. Decisions are Feast's own (affirmative:
one matching grant suffices). Each maison's private-read permission sits beside its private
views in maisons/.
"""

from atelier.features.definitions import ml_engineers_manage, service_writes_events, shared_read
from client_features import client_activity, client_attributes, client_events_push, client_profile, client_recent
from entities import client, country, product, store
from feature_services import candidate_tower_v1, popularity_v1, query_tower_v1, weekly_sales_v1
from product_features import product_attributes, product_catalog, product_popularity
from sales_features import country_clientele_weekly, country_sales_weekly, store_clientele_weekly, store_sales_weekly

ml_engineers_manage_everything = ml_engineers_manage()

# Everything tagged `sharing: shared` above, by name.
maisons_read_shared_features = shared_read(
    [client, product, country, store, client_profile, client_attributes, client_activity, client_recent, product_catalog, product_attributes,
     product_popularity, query_tower_v1, candidate_tower_v1, popularity_v1,
     country_sales_weekly, store_sales_weekly, country_clientele_weekly, store_clientele_weekly, weekly_sales_v1]
)

services_write_client_events = service_writes_events([client_recent, client_events_push])
