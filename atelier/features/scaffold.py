"""`atelier features new`: a maison's private view, its feature service and its permission, as a file.

Why a generator: a maison team adds features the way `feast init` starts a project, from a file
that already follows every rule `atelier features check` enforces (tags, descriptions, the
permission naming the maison, the naming convention), so the first apply works and the team
edits from a correct example instead of copying another maison's file.

The view starts on the maison's engagement table, which `atelier features compute` writes for
every maison of the catalog (its clients' purchases, spend and views of its products); the team
edits the fields, or points `source(...)` at another dataset of the lake.
The file is written only if the repository, with it, passes the check; otherwise nothing is left.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa

from atelier.errors import AtelierError
from atelier.features.governance import SLUG, prefix
from atelier.features.schemas import MAISON_ENGAGEMENT, description
from atelier.io import write_bytes_atomic
from atelier.settings import Settings

NAME = re.compile(r"^[a-z][a-z0-9_]*$")

TEMPLATE = '''"""{title}: {maison}'s private {name} features.

Scaffolded by `atelier features new --maison {maison} --name {name}`; edit freely, then
`atelier features check`, `atelier features apply -r <region>`, `atelier features materialize -r <region>`.

- `{view}`: private to {maison} (owner/sharing/sensitivity tags); every field needs a description.
  Its source is {maison}'s engagement table, computed by `atelier features compute` from the
  region's events; point `source(...)` at another dataset of the lake to read your own table.
- `{service}`: what a {maison} model or app reads: the group's shared client views, reused, and
  this view.
- `{permission}`: only the role `maison:{maison}` (and ML engineers) may read the two.
"""

from feast import FeatureService, FeatureView, Field
from feast.types import Float64, Int64

from atelier.features.definitions import NO_TTL, maison_private_read, source, tags
from client_features import client_activity, client_profile
from entities import client

{view} = FeatureView(
    name="{view}",
    entities=[client],
    ttl=NO_TTL,
    schema=[
{fields}
    ],
    source=source(name="{view}_source", table="features/{{region}}/maison_engagement/{maison}", timestamp_field="event_timestamp",
                  description="{maison}'s engagement per client, from the region's events."),
    online=True,
    description="{title}: {name} figures per client, from {maison}'s own events.",
    tags=tags(owner="{maison}", sharing="private", sensitivity="confidential"),
)

{service} = FeatureService(
    name="{service}",
    features=[client_profile, client_activity, {view}],
    description="The group's shared client views with {maison}'s {name} features.",
    tags=tags(owner="{maison}", sharing="private", sensitivity="confidential"),
)

{permission} = maison_private_read("{maison}", [{view}, {service}], name="{permission}")
'''


def names(maison: str, name: str) -> dict[str, str]:
    view = name if name.startswith(prefix(maison)) else prefix(maison) + name
    return {"view": view, "service": f"{view}_v1", "permission": f"{view}_private_read"}


def new(settings: Settings, maison: str, name: str, *, known_maisons: list[str] | None = None, force: bool = False) -> Path:
    """Write feature_repo/maisons/<view>.py; returns its path. Refuses bad names, an unknown
    maison, an existing file (unless `force`) and a result that breaks the rules."""
    from atelier.features import repo
    from atelier.features.governance import check

    if not SLUG.match(maison):
        raise AtelierError(f"maison {maison!r} is not a slug", fix="lowercase words joined by '-', as in the catalog: lumiere-de-grasse")
    if known_maisons and maison not in known_maisons:
        raise AtelierError(f"maison {maison!r} is not in the group's catalog", details=[f"known: {', '.join(known_maisons)}"],
                           fix="use the maison's slug as the catalog writes it")
    if not NAME.match(name):
        raise AtelierError(f"name {name!r} is not snake_case", fix="lowercase letters, digits and '_', starting with a letter: gifting, vip_engagement")
    n = names(maison, name)
    path = settings.feature_repo / "maisons" / f"{n['view']}.py"
    if path.exists() and not force:
        raise AtelierError(f"{path.name} exists already", where=str(path), fix="choose another --name, or --force to overwrite it")
    contents = repo.parse_definitions(settings)
    taken = {o.name for o in [*contents.feature_views, *contents.feature_services, *contents.permissions]}
    clash = sorted(taken & set(n.values())) if not path.exists() else []
    if clash:
        raise AtelierError(f"the repository already defines {', '.join(clash)}", fix="choose another --name")
    fields = "\n".join(
        f'        Field(name="{f.name}", dtype={"Float64" if f.type == pa.float64() else "Int64"}, description="{description(f).replace("the maison", maison)}"),'
        for f in MAISON_ENGAGEMENT if f.name not in ("client_id", "event_timestamp")
    )
    title = maison.replace("-", " ").title()
    body = TEMPLATE.format(title=title, maison=maison, name=name, fields=fields, **n)
    previous = path.read_bytes() if path.exists() else None
    write_bytes_atomic(path, body.encode())
    try:
        problems = check(repo.parse_definitions(settings))
    except Exception as e:
        _restore(path, previous)
        raise AtelierError(f"the scaffold does not parse: {e}", fix="report this as a bug") from e
    if problems:
        _restore(path, previous)
        raise AtelierError("with the new file the repository would break the rules; nothing was written",
                           details=[f"{p.kind} {p.name}: {p.message}" for p in problems], fix="run `atelier features check` and mend the listed problems first")
    return path


def _restore(path: Path, previous: bytes | None) -> None:
    if previous is None:
        path.unlink(missing_ok=True)
    else:
        write_bytes_atomic(path, previous)
