"""Building blocks for `feature_repo/`: tags, roles, and views whose schema comes from data.

The feature repository stays declarative; what needs code (reading the lake's manifest, making a
maison's private view and the permission that guards it) lives here so every maison team writes
the same one-liners.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pyarrow as pa
from feast import Entity, FeatureView, Field
from feast.feast_object import ALL_RESOURCE_TYPES
from feast.permissions.action import ALL_ACTIONS, AuthzedAction
from feast.permissions.permission import Permission
from feast.permissions.policy import RoleBasedPolicy
from feast.types import Array, Float64, Int64, String, UnixTimestamp

from atelier.features.offline_store import AtelierSource
from atelier.features.schemas import MAISON_ENGAGEMENT, description
from atelier.settings import get_settings

ML_ENGINEER = "ml-engineer"
SERVING = "service:recommender"
NO_TTL = timedelta(0)  # rows carry their own validity: the pipeline emits a row whenever a value changes
READ_ACTIONS = [AuthzedAction.DESCRIBE, AuthzedAction.READ_ONLINE, AuthzedAction.READ_OFFLINE]


def source(name: str, table: str, timestamp_field: str, description: str = ""):
    """A batch source for the deployment at hand: an encrypted Parquet dataset under the data home
    (`table` is its path, `{region}` filled by each region's store), or in the cloud the BigQuery
    table of the same name in the region's own `atelier` dataset."""
    if get_settings().offline_store == "bigquery":
        from feast import BigQuerySource

        return BigQuerySource(name=name, table=f"atelier.{bigquery_table(table)}", timestamp_field=timestamp_field, description=description)
    return AtelierSource(name=name, table=table, timestamp_field=timestamp_field, description=description)


def bigquery_table(table: str) -> str:
    """'features/{region}/maison_engagement/lumiere-de-grasse' -> 'maison_engagement_lumiere_de_grasse'."""
    parts = [p for p in table.split("/") if p not in ("lake", "features", "catalog", "{region}") and not p.startswith("region=")]
    return "_".join(parts).replace("-", "_")


def maison_role(maison: str) -> str:
    return f"maison:{maison}"


def tags(*, owner: str, sharing: str, sensitivity: str) -> dict[str, str]:
    """Every view says who owns it, whether other maisons may reuse it, and how sensitive it is.
    The allowed values are checked with every other rule by `atelier features check`
    (atelier.features.governance), which lists all problems instead of stopping at the first."""
    return {"owner": owner, "sharing": sharing, "sensitivity": sensitivity}


def _manifest() -> dict:
    path = get_settings().paths.manifest
    return json.loads(path.read_text()) if path.exists() else {}


def manifest_attributes(table: str) -> list[dict]:
    """Attribute columns of the lake's clients or products, as recorded when the data was written."""
    return _manifest().get("attributes", {}).get(table, [])


def group_maisons() -> list[str]:
    """The group's maisons: those in the lake's catalog, else none yet."""
    return sorted(_manifest().get("maisons", []))


_FEAST_TYPES = {"string": String, "int64": Int64, "double": Float64, "list<item: string>": Array(String), "list<item: int64>": Array(Int64)}


def fields(schema: pa.Schema, *, skip: tuple[str, ...] = ("event_timestamp",)) -> list[Field]:
    """A view's fields from a feature table's schema (atelier.features.schemas, .series), with the
    descriptions stated there: the pipeline writes that schema, the view reads it, nothing is
    restated. Entity keys and the row time are left out (`skip`)."""
    out = []
    for f in schema:
        if f.name in skip:
            continue
        kind = str(f.type)
        dtype = UnixTimestamp if kind.startswith("timestamp") else _FEAST_TYPES[kind]
        out.append(Field(name=f.name, dtype=dtype, description=description(f)))
    return out


def attribute_view(name: str, entity: Entity, batch_source, table: str, **tag_args) -> FeatureView | None:
    """A view of every attribute column of the lake table, typed as the manifest says; None if there are none."""
    attributes = manifest_attributes(table)
    if not attributes:
        return None
    schema = [Field(name=a["name"], dtype=String if a["kind"] == "categorical" else Float64,
                    description=f"The {table} table's `{a['name']}` column ({a['kind']}), as imported into the lake.")
              for a in attributes]
    return FeatureView(
        name=name, entities=[entity], ttl=NO_TTL, schema=schema, source=batch_source, online=True,
        description=f"Attribute columns of the {table} table, from the lake's manifest.", tags=tags(**tag_args),
    )


def maison_engagement_view(maison: str, entity: Entity) -> FeatureView:
    """A maison's private view of its own clients' engagement with it."""
    slug = maison.replace("-", "_")
    batch = source(f"{slug}_engagement_source", f"features/{{region}}/maison_engagement/{maison}", "event_timestamp")
    schema = fields(MAISON_ENGAGEMENT, skip=("client_id", "event_timestamp"))
    return FeatureView(
        name=f"{slug}_engagement", entities=[entity], ttl=NO_TTL, schema=schema, source=batch, online=True,
        description=f"{maison}'s own engagement figures per client (its events only).",
        tags=tags(owner=maison, sharing="private", sensitivity="confidential"),
    )


# Permissions name the resources they cover by exact name, derived from the tags when the repo is
# parsed. Feast 0.67's matcher compares `required_tags` with a `required_tags` attribute that
# feature views and services do not have, and on a miss it logs a warning and *matches*: a
# tag-based permission would cover every resource. tests/protect/test_permissions.py pins this.


def _exact(resources) -> list[str]:
    return [f"^{re.escape(r.name)}$" for r in resources]


def maison_private_read(maison: str, resources: list, name: str | None = None) -> Permission:
    """Only the owning maison (and ML engineers, through their own permission) read these.
    `name`: the permission's, when a maison has several (one per file of its own)."""
    for r in resources:
        if r.tags.get("owner") != maison or r.tags.get("sharing") != "private":
            raise ValueError(f"{r.name} is not tagged as private to {maison}")
    return Permission(
        name=name or f"{maison.replace('-', '_')}_reads_its_private_features",
        types=ALL_RESOURCE_TYPES,
        name_patterns=_exact(resources),
        actions=READ_ACTIONS,
        policy=RoleBasedPolicy(roles=[maison_role(maison)]),
    )


def shared_read(resources: list) -> Permission:
    """Every maison (and the recommendation service) reads what is tagged shared."""
    return Permission(
        name="maisons_read_shared_features",
        types=ALL_RESOURCE_TYPES,
        name_patterns=_exact([r for r in resources if r is not None and r.tags.get("sharing") == "shared"]),
        actions=READ_ACTIONS,
        policy=RoleBasedPolicy(roles=[maison_role(m) for m in group_maisons()] + [SERVING]),
    )


def service_writes_events(resources: list) -> Permission:
    """The regional services write the real-time views (POST /events), and nothing else."""
    return Permission(
        name="services_write_client_events",
        types=ALL_RESOURCE_TYPES,
        name_patterns=_exact(resources),
        actions=[AuthzedAction.WRITE_ONLINE, AuthzedAction.WRITE_OFFLINE],
        policy=RoleBasedPolicy(roles=[SERVING]),
    )


def ml_engineers_manage() -> Permission:
    return Permission(
        name="ml_engineers_manage_everything",
        types=ALL_RESOURCE_TYPES,
        actions=ALL_ACTIONS,
        policy=RoleBasedPolicy(roles=[ML_ENGINEER]),
    )
