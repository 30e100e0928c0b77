"""Horlogerie Vauclair (watches): its private engagement view."""

from atelier.features.definitions import maison_engagement_view, maison_private_read
from entities import client

horlogerie_vauclair_engagement = maison_engagement_view("horlogerie-vauclair", client)

horlogerie_vauclair_reads_private = maison_private_read("horlogerie-vauclair", [horlogerie_vauclair_engagement])
