"""Lumière de Grasse (perfumes): its private engagement view and its clienteling service.

The service reuses the group's shared client views and adds the maison's own; other maisons can
read the shared part but not this view.
"""

from feast import FeatureService

from atelier.features.definitions import maison_engagement_view, maison_private_read, tags
from client_features import client_activity, client_profile
from entities import client

lumiere_de_grasse_engagement = maison_engagement_view("lumiere-de-grasse", client)

lumiere_de_grasse_clienteling_v1 = FeatureService(
    name="lumiere_de_grasse_clienteling_v1",
    features=[client_profile, client_activity, lumiere_de_grasse_engagement],
    description="What Lumière de Grasse's advisors see about a client.",
    tags=tags(owner="lumiere-de-grasse", sharing="private", sensitivity="confidential"),
)

lumiere_de_grasse_reads_private = maison_private_read("lumiere-de-grasse", [lumiere_de_grasse_engagement, lumiere_de_grasse_clienteling_v1])
