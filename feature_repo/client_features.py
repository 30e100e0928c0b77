"""Client features, shared by every maison: profile, attributes and activity.

Sources name datasets under the data home; `{region}` is filled by the region's store, so these
definitions serve every region while each region reads only its own (encrypted) data.
"""

from feast import FeatureView, Field, PushSource
from feast.types import String

from atelier.features import schemas
from atelier.features.definitions import NO_TTL, attribute_view, fields, source, tags
from entities import client

# The client master, as written by `atelier data generate|import` (one row per client).
clients_source = source(
    name="clients_source",
    table="lake/clients/region={region}",
    timestamp_field="profile_timestamp",
    description="Client master records of the region.",
)

# Windowed activity computed by `atelier features compute` from the region's events.
client_activity_source = source(
    name="client_activity_source",
    table="features/{region}/client_activity",
    timestamp_field="event_timestamp",
    description="One row per client per day on which any activity figure changes.",
)

client_profile = FeatureView(
    name="client_profile",
    entities=[client],
    ttl=NO_TTL,
    schema=[Field(name="country", dtype=String, description="ISO 3166 alpha-2 code of the client's country of residence.")],
    source=clients_source,
    online=True,
    description="Where the client lives.",
    tags=tags(owner="group", sharing="shared", sensitivity="confidential"),
)

# Every extra column of the client master (tier, age band, ...), typed from the lake's manifest.
client_attributes = attribute_view(
    "client_attributes", client, clients_source, "clients", owner="group", sharing="shared", sensitivity="confidential"
)

client_activity = FeatureView(
    name="client_activity",
    entities=[client],
    ttl=NO_TTL,
    schema=fields(schemas.CLIENT_ACTIVITY, skip=("client_id", "event_timestamp")),
    source=client_activity_source,
    online=True,
    description="Purchases, spend, views and wishlist adds over trailing windows; favourites; last purchase; bought and recent products.",
    tags=tags(owner="group", sharing="shared", sensitivity="confidential"),
)

# The real-time path: POST /events (atelier.events) writes each client's last events here the
# moment they arrive; `push` through this source is Feast's own way in. Its offline rows are
# computed from the event journal by `atelier features compute`, so a full materialize rebuilds
# the online rows.
client_events_push = PushSource(
    name="client_events_push",
    batch_source=source(
        name="client_recent_source",
        table="features/{region}/client_recent",
        timestamp_field="event_timestamp",
        description="Each client's last events received in real time, as of its latest one.",
    ),
    description="Client events as they happen (POST /events, atelier events replay).",
)

client_recent = FeatureView(
    name="client_recent",
    entities=[client],
    ttl=NO_TTL,
    schema=fields(schemas.CLIENT_RECENT, skip=("client_id", "event_timestamp")),
    source=client_events_push,
    online=True,
    description="The client's last events, received in real time: what it just viewed, wished for, bought or returned.",
    tags=tags(owner="group", sharing="shared", sensitivity="confidential"),
)
