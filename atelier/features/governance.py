"""The feature repository's rules, checked before anything is applied (`atelier features check`).

Why: the platform relies on tags it does not enforce elsewhere. `sharing` decides who may read a
view (permissions.py grants every maison the shared ones), `owner` names the maison whose role
reads a private view, `sensitivity` bounds what may be shared at all, and descriptions are what
maison teams read in `atelier features list` and Feast's UI instead of the code. A view that
forgets its tags or its permission would be readable by the wrong maison, or by none; so each
rule below is checked on the parsed definitions, every problem is listed with its object and a
fix, and `repo.apply` refuses to register a repository with any problem.

Rules:
  tags         owner, sharing and sensitivity on every view and feature service, with allowed
               values (owner: `group` or a maison slug; sharing: shared | private;
               sensitivity: public < internal < confidential < restricted)
  description  on every feature of every view
  permission   a Feast permission naming each private view, for its owning maison's role
  sensitivity  no shared view or service above `confidential` (restricted data stays private)
  reuse        no feature service reads another maison's private view, and a shared service
               reads no private view at all
  names        snake_case; a private view or service starts with its owner's slug
               (lumiere-de-grasse -> lumiere_de_grasse_...); a feature service ends in _v<N>
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from feast.repo_contents import RepoContents

GROUP = "group"
SHARING = ("shared", "private")
SENSITIVITY = ("public", "internal", "confidential", "restricted")
MAX_SHARED = "confidential"
REQUIRED_TAGS = ("owner", "sharing", "sensitivity")
SLUG = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")
VERSIONED = re.compile(r"^[a-z][a-z0-9_]*_v[0-9]+$")
RULES = ("tags", "description", "permission", "sensitivity", "reuse", "names")


@dataclass(frozen=True)
class Problem:
    rule: str
    kind: str  # feature view | feature service
    name: str
    message: str
    fix: str

    def to_json(self) -> dict:
        return asdict(self)


def prefix(owner: str) -> str:
    """The name prefix of an owner's private objects: 'lumiere-de-grasse' -> 'lumiere_de_grasse_'."""
    return owner.replace("-", "_") + "_"


def views_of(contents: RepoContents) -> list:
    return [*contents.feature_views, *contents.on_demand_feature_views, *contents.stream_feature_views]


def check(contents: RepoContents) -> list[Problem]:
    """Every problem in the parsed repository.

    An owner is checked for its form, not against the lake's catalog: the repository is shared by
    every deployment, and a maison's views may be defined before its data arrives (or in a data
    set without it); `atelier features new` does refuse a maison the catalog does not know."""
    problems: list[Problem] = []
    views = {v.name: v for v in views_of(contents)}
    for kind, objects in (("feature view", views.values()), ("feature service", contents.feature_services)):
        for obj in objects:
            problems += _tags(kind, obj)
            problems += _names(kind, obj)
            if obj.tags.get("sharing") == "shared" and obj.tags.get("sensitivity") in SENSITIVITY \
                    and SENSITIVITY.index(obj.tags["sensitivity"]) > SENSITIVITY.index(MAX_SHARED):
                problems.append(Problem("sensitivity", kind, obj.name, f"is shared but {obj.tags['sensitivity']}: shared data may be at most {MAX_SHARED}",
                                        "make it private to its owning maison, or lower its sensitivity if the data allows"))
    for view in views.values():
        for f in view.features:
            if not (f.description or "").strip():
                problems.append(Problem("description", "feature view", view.name, f"feature {f.name!r} has no description",
                                        f"add description=\"...\" to Field(name={f.name!r}, ...): what it measures, over which window, in which unit"))
        if view.tags.get("sharing") == "private" and view.tags.get("owner"):
            problems += _permission(view, contents)
    for service in contents.feature_services:
        problems += _reuse(service, views)
    return problems


def _tags(kind: str, obj) -> list[Problem]:
    tags = obj.tags or {}
    missing = [t for t in REQUIRED_TAGS if not tags.get(t)]
    out = []
    if missing:
        out.append(Problem("tags", kind, obj.name, f"lacks the tag(s) {', '.join(missing)}",
                           "tags=tags(owner=..., sharing=..., sensitivity=...) from atelier.features.definitions"))
    owner, sharing, sensitivity = tags.get("owner"), tags.get("sharing"), tags.get("sensitivity")
    if sharing and sharing not in SHARING:
        out.append(Problem("tags", kind, obj.name, f"sharing {sharing!r} is not one of {', '.join(SHARING)}", "use sharing=\"shared\" or \"private\""))
    if sensitivity and sensitivity not in SENSITIVITY:
        out.append(Problem("tags", kind, obj.name, f"sensitivity {sensitivity!r} is not one of {', '.join(SENSITIVITY)}", "use one of the listed levels"))
    if owner and owner != GROUP and not SLUG.match(owner):
        out.append(Problem("tags", kind, obj.name, f"owner {owner!r} is neither {GROUP!r} nor a maison slug (lowercase words joined by '-')", "owner=\"lumiere-de-grasse\", for example"))
    if owner == GROUP and sharing == "private":
        out.append(Problem("tags", kind, obj.name, "is private to the group: private objects belong to one maison", "name the owning maison, or share it"))
    return out


def _names(kind: str, obj) -> list[Problem]:
    out = []
    pattern, form = (VERSIONED, "snake_case ending in _v<N>") if kind == "feature service" else (SNAKE, "snake_case")
    if not pattern.match(obj.name):
        out.append(Problem("names", kind, obj.name, f"name is not {form}", "rename it, e.g. maison_clienteling_v1" if kind == "feature service" else "rename it, e.g. maison_engagement"))
    owner = (obj.tags or {}).get("owner")
    if (obj.tags or {}).get("sharing") == "private" and owner and owner != GROUP and not obj.name.startswith(prefix(owner)):
        out.append(Problem("names", kind, obj.name, f"is private to {owner} but its name does not start with {prefix(owner)!r}",
                           f"rename it {prefix(owner)}{obj.name}"))
    return out


def _permission(view, contents: RepoContents) -> list[Problem]:
    from atelier.features.definitions import maison_role

    owner = view.tags["owner"]
    role = maison_role(owner)
    for p in contents.permissions:
        roles = getattr(p.policy, "roles", []) or []
        if role in roles and any(re.fullmatch(pattern, view.name) for pattern in (p.name_patterns or [])):
            return []
    return [Problem("permission", "feature view", view.name, f"is private to {owner} but no permission lets the role {role!r} read it",
                    f"add maison_private_read({owner!r}, [{view.name}, ...]) beside it (atelier.features.definitions)")]


def _reuse(service, views: dict) -> list[Problem]:
    out = []
    owner, sharing = service.tags.get("owner"), service.tags.get("sharing")
    for projection in service.feature_view_projections:
        view = views.get(projection.name)
        if view is None or view.tags.get("sharing") != "private":
            continue
        view_owner = view.tags.get("owner")
        if view_owner != owner:
            out.append(Problem("reuse", "feature service", service.name, f"reads {view.name}, private to {view_owner}",
                               f"read {view_owner}'s shared views only, or ask {view_owner} to share this one"))
        elif sharing == "shared":
            out.append(Problem("reuse", "feature service", service.name, f"is shared but reads the private view {view.name}: every maison could read it through the service",
                               "make the service private to its maison"))
    return out
