"""`atelier audit residency`: look everywhere client data goes, and report any client out of its region.

Writes already refuse other regions' clients (atelier.data.lake.assert_region_clients); this
audit checks the result independently, as a compliance job would, with the group's keys:

* offline partitions: every dataset under a region's lake partition, feature tables and runs
  (decrypted in memory), including whether client-level data is encrypted at all;
* online stores: every key of each region's store (Redis SCAN, or the embedded sqlite tables),
  decoded to its entity, and any key of another region's Feast project;
* training sets kept with each run;
* model artifacts in the BentoML store (every file of each region's models, searched for client
  ids of other regions) and the bentos built from them;
* locations: the weekly sales series (`<level>_sales_weekly`, `<level>_clientele_weekly`) and the exported
  forecasts and assortments of a region name only its own countries and its own stores (a
  store's region is its country's, from the catalog of stores).

A client's region is its country's: the region whose lake holds it (its roster, see
`atelier.protect.residency`). An id held by a region whose roster lacks it is a finding, named by
the region whose roster has it, or "unknown" (a client no region holds any more). In artifacts,
ids of other regions' rosters are searched as whole values: not inside a longer number or word.
"""

from __future__ import annotations

import re
import sqlite3
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.compute as pc
from feast.infra.key_encoding_utils import deserialize_entity_key

from atelier.features.repo import project_name
from atelier.context import RegionContext
from atelier.protect.parquet import MARKER, dataset_info, read_dataset
from atelier.protect.residency import roster
from atelier.regions import region_codes
from atelier.settings import Settings


@dataclass
class Finding:
    place: str
    region: str
    detail: str
    examples: list[str] = field(default_factory=list)


@dataclass
class Report:
    rosters: dict[str, frozenset[str]] = field(default_factory=dict)
    checked: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def home(self, client_id: str) -> str:
        return next((r for r, ids in self.rosters.items() if client_id in ids), "unknown")

    def foreign(self, place: str, region: str, ids) -> None:
        ids = [i for i in ids if i is not None]  # anonymous lines (no client) hold no client data
        self.checked[place] += len(ids)
        own = self.rosters[region]
        bad = sorted({i for i in ids if i not in own})
        if bad:
            by = defaultdict(int)
            for i in bad:
                by[self.home(i)] += 1
            where = ", ".join(f"{n} of {r}" for r, n in sorted(by.items()))
            self.findings.append(Finding(place, region, f"{len(bad)} client(s) of another region ({where})", bad[:5]))


def _region_datasets(settings: Settings, region: str) -> list[tuple[str, Path]]:
    roots = [
        ("offline", p) for p in sorted(settings.paths.lake.glob(f"*/region={region}"))
    ] + [("offline", settings.paths.features(region)), ("offline", settings.paths.stream(region)), ("training set", settings.paths.runs(region))]
    found = []
    for kind, root in roots:
        if root.exists():
            for marker in sorted(root.rglob(MARKER)):
                if not any(part.startswith(".") for part in marker.relative_to(settings.home).parts):
                    found.append((kind, marker.parent))
    return found


def _offline(ctx: RegionContext, report: Report) -> None:
    settings, region, keys = ctx.settings, ctx.region, ctx.keys
    for kind, path in _region_datasets(settings, region):
        info = dataset_info(path)
        if "client_id" not in info["schema"].names:
            continue
        place = f"{kind}: {path.relative_to(settings.home)}"
        if not info["encrypted"]:
            report.findings.append(Finding(place, region, "client-level data stored without encryption"))
        elif info["region"] != region:
            report.findings.append(Finding(place, region, f"encrypted with region {info['region']!r}'s key"))
            continue
        ids = read_dataset(path, keys if info["encrypted"] else None, columns=["client_id"]).column("client_id")
        report.foreign(place, region, pc.unique(ids).to_pylist())


def _client_ids_from_keys(keys, place: str, region: str, report: Report) -> list[str]:
    """Client ids of the online keys (entity key + Feast project); keys of another region's project are findings too."""
    projects = {project_name(r).encode(): r for r in region_codes()}
    ids, foreign_projects = [], set()
    for key in keys:
        owner = next(((suffix, r) for suffix, r in projects.items() if key.endswith(suffix)), None)
        if owner is None:
            continue
        suffix, owner_region = owner
        if owner_region != region:
            foreign_projects.add(owner_region)
        entity = deserialize_entity_key(key[: -len(suffix)], 3)
        if list(entity.join_keys) == ["client_id"]:
            ids.append(entity.entity_values[0].string_val)
    if foreign_projects:
        report.findings.append(Finding(place, region, f"holds keys of another region's project ({', '.join(sorted(foreign_projects))})"))
    return ids


def _online(ctx: RegionContext, report: Report) -> None:
    settings, region = ctx.settings, ctx.region
    project = project_name(region).encode()
    if settings.online_store == "redis":
        import redis

        place = f"online: redis {settings.redis_for(region).host}:{settings.redis_for(region).port}"
        client = redis.Redis(**settings.redis_for(region).client_kwargs())
        keys = list(client.scan_iter(count=10_000))
    else:
        db = settings.paths.feast_dir(region) / "online.db"
        place = f"online: {db.relative_to(settings.home)}"
        if not db.exists():
            return
        con = sqlite3.connect(db)
        keys = []
        for (table,) in con.execute("select name from sqlite_master where type='table'"):
            keys += [k + project for (k,) in con.execute(f'select distinct entity_key from "{table}"')]
    report.foreign(place, region, _client_ids_from_keys(keys, place, region, report))


def _artifacts(ctx: RegionContext, report: Report) -> None:
    from atelier.models.store import use_bentoml_home

    region = ctx.region
    use_bentoml_home(ctx.settings)
    import bentoml

    foreign = {i.encode(): r for r, ids in report.rosters.items() if r != region for i in ids}
    places = [(f"model: {m.tag}", Path(m.path)) for m in bentoml.models.list() if m.info.labels.get("region") == region]
    places += [(f"bento: {b.tag}", Path(b.path)) for b in bentoml.bentos.list() if b.info.labels.get("region") == region]
    for place, root in places:
        files = [f for f in root.rglob("*") if f.is_file()]
        bad = sorted({i.decode() for f in files for i in find_ids(f.read_bytes(), foreign)})
        report.checked[place] += len(files)
        if bad:
            report.findings.append(Finding(place, region, f"{len(bad)} client id(s) of another region in the artifacts", bad[:5]))


LOCATION_FILES = ("forecasts.parquet", "assortments.parquet")


def _locations(ctx: RegionContext, report: Report) -> None:
    """Countries and stores of another region in the region's series and in its forecast and assortment models."""
    import pandas as pd
    import pyarrow.parquet as pq

    from atelier.regions import region_of_country

    settings, region = ctx.settings, ctx.region
    path = settings.paths.catalog("stores")
    stores = read_dataset(path, None, columns=["store_id", "country"]).to_pandas() if path.exists() else pd.DataFrame(columns=["store_id", "country"])
    store_region = {s: region_of_country(c) for s, c in zip(stores["store_id"], stores["country"])}

    def check(place: str, frame: pd.DataFrame) -> None:
        report.checked[place] += len(frame)
        home = [store_region.get(loc, "unknown") if level == "store" else region_of_country(loc) or "unknown"
                for level, loc in zip(frame["level"], frame["location"])]
        bad = sorted({f"{lv} {loc} ({h})" for lv, loc, h in zip(frame["level"], frame["location"], home) if h != region})
        if bad:
            report.findings.append(Finding(place, region, f"{len(bad)} location(s) of another region", bad[:5]))

    from atelier.features import series

    keys = ctx.keys
    for kind in series.TABLES:
        for level in series.LEVELS:
            table = settings.paths.feature_table(series.table_name(kind, level), region)
            if table.exists():
                rows = read_dataset(table, keys, columns=[series.KEY[level]])
                check(f"offline: {table.relative_to(settings.home)}", series.from_table(rows, level).drop_duplicates())
    import bentoml

    for m in bentoml.models.list():
        if m.info.labels.get("region") == region and m.info.labels.get("task") in ("forecast", "assortment"):
            for name in LOCATION_FILES:
                f = Path(m.path) / name
                if f.exists():
                    check(f"model: {m.tag}", pq.read_table(f, columns=["level", "location"]).to_pandas().drop_duplicates())


def find_ids(data: bytes, ids: dict[bytes, object] | set[bytes]) -> set[bytes]:
    """Which of `ids` occur in `data` as whole values.

    A whole value is not preceded by a letter, digit, '.' or '-' (so not the tail of a word, a
    decimal or a date) and not followed by a digit (so not the head of a longer number). That
    finds ids in text (JSON, CSV, vocabulary files) and in protobuf strings, where a length byte
    comes before a value and the next field's tag after it.
    """
    found: set[bytes] = set()
    for length in sorted({len(i) for i in ids}):
        pattern = re.compile(rb"(?<![A-Za-z0-9.\-])(?=([^\x00-\x1f]{%d})(?![0-9]))" % length, re.DOTALL)
        found.update(m.group(1) for m in pattern.finditer(data) if m.group(1) in ids)
    return found


def audit_residency(settings: Settings, regions: list[str] | None = None) -> Report:
    report = Report(rosters={r: frozenset(roster(settings, r).to_pylist()) for r in region_codes()})
    for region in regions or region_codes():
        ctx = RegionContext.of(settings, region)  # one per region: its keys are read once
        _offline(ctx, report)
        _online(ctx, report)
        _artifacts(ctx, report)
        _locations(ctx, report)
    return report
