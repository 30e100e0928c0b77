"""What a region's feature store holds, for the people who reuse it (`atelier features list`).

Read from the region's Feast registry (what was applied), its online store (how many rows each
view serves) and the model store (which exported model was trained on which view): a maison
team learns what exists, who owns it, how sensitive it is, how fresh it is and who depends on it
without opening `feature_repo/`.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

from atelier.errors import AtelierError
from atelier.features import repo
from atelier.settings import Settings


def describe(settings: Settings, region: str, *, owner: str | None = None, sharing: str | None = None,
             sensitivity: str | None = None) -> dict:
    """{'region', 'views': [...], 'services': [...]} for the region's applied project, filtered by tags."""
    registry = repo.registry_path(settings, region)
    if not registry.exists():
        raise AtelierError(f"region {region!r} has no applied feature repository", where=str(registry),
                           fix=f"run `atelier features apply -r {region}`")
    store = repo.feature_store(settings, region)
    views = [*store.list_feature_views(), *store.list_on_demand_feature_views(), *store.list_stream_feature_views()]
    services = store.list_feature_services()
    rows = online_rows(settings, region, [v.name for v in views])
    models = model_usage(settings, region)
    wanted = {"owner": owner, "sharing": sharing, "sensitivity": sensitivity}

    def keep(obj) -> bool:
        return all(v is None or obj.tags.get(k) == v for k, v in wanted.items())

    out_views = []
    for v in sorted(views, key=lambda v: v.name):
        if not keep(v):
            continue
        intervals = getattr(v, "materialization_intervals", None) or []
        last = max((end for _, end in intervals), default=None)
        out_views.append({
            "name": v.name,
            "description": v.description,
            "entities": list(getattr(v, "entities", []) or []),
            "features": [{"name": f.name, "type": str(f.dtype), "description": f.description} for f in v.features],
            "tags": {k: v.tags.get(k) for k in ("owner", "sharing", "sensitivity")},
            "materialized_at": _iso(last),
            "online_rows": rows.get(v.name),
            "feature_services": sorted(s.name for s in services if v.name in {p.name for p in s.feature_view_projections}),
            "models": sorted(m for m, used in models.items() if v.name in used),
        })
    out_services = [
        {"name": s.name, "description": s.description, "tags": {k: s.tags.get(k) for k in ("owner", "sharing", "sensitivity")},
         "views": [p.name for p in s.feature_view_projections],
         "models": sorted(m for m, used in models.items() if s.name in used)}
        for s in sorted(services, key=lambda s: s.name) if keep(s)
    ]
    return {"region": region, "project": store.project, "views": out_views, "services": out_services}


def _iso(t: dt.datetime | None) -> str | None:
    if t is None:
        return None
    return (t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)).astimezone(dt.timezone.utc).isoformat(timespec="seconds")


def online_rows(settings: Settings, region: str, views: list[str]) -> dict[str, int | None]:
    """Entities each view holds in the region's online store (None: the store cannot be read).

    Redis: one pass over the project's keys (SCAN), asking each hash which views it carries
    (`_ts:<view>`, written with every row) in pipelined HMGETs. SQLite: one table per view."""
    project = repo.project_name(region)
    try:
        if settings.online_store == "redis":
            return _redis_rows(settings, region, project, views)
        return _sqlite_rows(settings.paths.feast_dir(region) / "online.db", project, views)
    except Exception:  # an unreachable store: the listing still shows the definitions
        return dict.fromkeys(views)


def _redis_rows(settings: Settings, region: str, project: str, views: list[str]) -> dict[str, int]:
    import redis

    client = redis.Redis(**settings.redis_for(region).client_kwargs())
    counts = dict.fromkeys(views, 0)
    fields = [f"_ts:{v}".encode() for v in views]
    batch: list[bytes] = []

    def flush() -> None:
        pipe = client.pipeline(transaction=False)
        for key in batch:
            pipe.hmget(key, fields)
        for found in pipe.execute():
            for v, value in zip(views, found):
                counts[v] += value is not None
        batch.clear()

    for key in client.scan_iter(match=b"*" + project.encode(), count=10_000):
        batch.append(key)
        if len(batch) >= 2_000:
            flush()
    if batch:
        flush()
    return counts


def _sqlite_rows(db: Path, project: str, views: list[str]) -> dict[str, int]:
    if not db.exists():
        return dict.fromkeys(views, 0)
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = {name for (name,) in con.execute("select name from sqlite_master where type='table'")}
        return {v: (con.execute(f'select count(distinct entity_key) from "{project}_{v}"').fetchone()[0] if f"{project}_{v}" in tables else 0)
                for v in views}
    finally:
        con.close()


def model_usage(settings: Settings, region: str) -> dict[str, set[str]]:
    """Exported models of the region -> the views and feature services they were trained on
    (from each model's metadata: `feature_refs` 'view:feature', `feature_services`, `feature_views`)."""
    from atelier.models.store import use_bentoml_home

    use_bentoml_home(settings)
    import bentoml

    usage: dict[str, set[str]] = {}
    for m in bentoml.models.list():
        if m.info.labels.get("region") != region:
            continue
        meta = m.info.metadata or {}
        used = {ref.split(":", 1)[0] for ref in meta.get("feature_refs") or []}
        used |= set(meta.get("feature_views") or [])
        services = meta.get("feature_services") or []
        used |= set(services.values() if isinstance(services, dict) else services)
        if used:
            usage[str(m.tag)] = used
    return usage
