"""The lake, loaded into its region's BigQuery dataset: in the region, under the region's key, incrementally.

**Units.** What is loaded is a set of *units*, one per Parquet part: the parts of the region's
client tables (clients, events), the journal's parts (events received in real time,
atelier.events.journal) and the catalog's parts (maisons, products, stores). A part never
changes once written: an import writes a new lake, a journal part is written once. So a unit is
named by a digest of its file's bytes, the ciphertext: nothing is decrypted to compare. Every
row loaded carries its unit in a `_load_unit` column.

**Incremental and idempotent.** The dataset itself says what it holds: one query per table lists
its units. The units it lacks are loaded, appended by load jobs that each carry up to
`JOB_BYTES` of consecutive parts of one table (a service writes a journal part per batch of
events; BigQuery allows 1,500 load jobs per table a day). The units it holds that the home no
longer has (the lake was imported again, a client was erased) are deleted, one DML statement per
table. Loading twice therefore sends nothing the second time. Load jobs have deterministic ids
(region, table, the units they carry): should a finished job's units be missed by that list (two
loaders at once), BigQuery refuses the id again (409 Conflict) and the loader waits on that job
instead of appending the units twice. New units are loaded before gone ones are deleted: a query
that runs during a re-import's load may count both, never neither.

**In the region, under the region's key.** Before a byte is sent, the dataset must be in the
region's location (the region table) and its default key must be the region's BigQuery key
(Terraform output `kms_keys.bigquery`); every job runs in that location and names that key for
the tables it creates. The client tables' rows are checked against the region's roster. A part is
decrypted in memory and sent as plain Parquet from an in-memory buffer, over TLS: no plaintext
file is written.

The tables are the ones the feature SQL reads (atelier.features.sql, `atelier features sql`):
`events` (partitioned by day of `event_timestamp`, clustered by `client_id`), `clients`,
`products`, `stores`, `maisons`, and `streamed_events` (the journal's parts again, with every
journal column: the real-time view's SQL needs to know which events came in real time).

**Feature tables** (`features=True`, `--features`): the tables of the feature repository's views
that `atelier features compute` wrote on this machine, under the names Feast's BigQuery sources
read (`definitions.bigquery_table`: `client_activity`, `maison_engagement_<maison>`, ...), each
clustered by its view's join keys. Loaded by the same units, so a recomputed table replaces the old one and an unchanged one
sends nothing. The table follows its view's columns: a feature added is a column added by the
load job (an empty table is loaded again for it), a feature removed is a column dropped before
anything is appended. That is the cloud path for a region whose features are computed here; where one
machine is not enough, the feature SQL computes them in BigQuery instead.
"""

from __future__ import annotations

import hashlib
import io
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from atelier.context import RegionContext
from atelier.errors import AtelierError
from atelier.protect.parquet import MARKER, dataset_info, open_dataset, part_files
from atelier.protect.residency import assert_region_clients

UNIT = "_load_unit"
CATALOG = ("maisons", "products", "stores")
CLUSTERING = {"events": ["client_id"], "clients": ["client_id"], "streamed_events": ["client_id"]}
STREAMED = "streamed_events"  # the journal's events again, with every journal column: what the real-time view's SQL reads
LAKE = (*CATALOG, "clients", "events", STREAMED)  # the tables of the lake and the journal; the others are feature tables
ATTEMPTS = 3  # new job ids per group and run: a failed job's id cannot be used again
JOB_BYTES = 256 * 2**20  # files per load job: what is decrypted in memory at once


@dataclass(frozen=True)
class Unit:
    """One part to load: where it is, which table it goes to, and its digest."""

    table: str
    dataset: Path  # the part's dataset folder (its _dataset.json says how it is protected)
    file: Path | None  # None: the dataset has no rows (a feature table can be empty; BigQuery gets the table, empty)
    digest: str
    schema: pa.Schema | None = None  # cast to this (journal parts hold the lake's event columns and more)
    cluster: tuple[str, ...] = ()  # clustering of the table it creates (the lake's tables: CLUSTERING)

    @property
    def client_data(self) -> bool:
        return self.table not in CATALOG


@dataclass
class TableReport:
    held: int = 0  # units already in the dataset, kept
    loaded: int = 0
    rows: int = 0
    deleted: int = 0
    jobs: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Target:
    """The region's dataset, from the Terraform outputs."""

    project: str
    dataset: str
    location: str
    kms_key: str

    def table(self, name: str) -> str:
        return f"{self.project}.{self.dataset}.{name}"


def target_from_outputs(region: str, outputs: dict, project: str) -> Target:
    """The dataset, location and key of `region` from its Terraform outputs (atelier.features.cloud)."""
    from atelier.features.cloud import check_region

    r = check_region(region, outputs)
    key = (outputs.get("kms_keys") or {}).get("bigquery")
    if not key:
        raise AtelierError("terraform outputs lack kms_keys.bigquery, the region's BigQuery key", fix="apply the current terraform/modules/region")
    return Target(project, outputs["bigquery_dataset"], r.location, key)


def units(ctx: RegionContext, features: bool = False) -> list[Unit]:
    """Every part the region's dataset should hold, catalog first; with `features`, the feature
    tables computed here last."""
    from atelier.events import journal

    paths = ctx.paths
    found: list[Unit] = []
    for name in CATALOG:
        if (paths.catalog(name) / MARKER).exists():
            found += _units_of(name, paths.catalog(name))
    for name in ("clients", "events"):
        folder = paths.client_table(name, ctx.region)
        if not (folder / MARKER).exists():
            raise AtelierError(f"region {ctx.region!r} has no {name} in its lake", where=str(folder), fix="run `atelier data generate` or `atelier data import` first")
        found += _units_of(name, folder)
    events_schema = dataset_info(paths.client_table("events", ctx.region))["schema"]
    parts = journal.part_names(ctx)
    for name in parts:
        found += _units_of("events", journal.parts_dir(ctx) / name, schema=events_schema)
    for name in parts:  # the same parts, as they are (received_at and all): SQL builds the real-time view's rows from them
        found += _units_of(STREAMED, journal.parts_dir(ctx) / name, schema=journal.SCHEMA)
    if not parts:  # the table exists even before the first event comes in real time
        found.append(Unit(STREAMED, journal.parts_dir(ctx), None, _empty_digest(journal.SCHEMA), journal.SCHEMA))
    return found + (feature_units(ctx) if features else [])


def feature_units(ctx: RegionContext) -> list[Unit]:
    """The parts of every feature table the feature repository's views read (those computed here,
    not the lake's), each bound for the table its Feast source reads in BigQuery."""
    from atelier.features.definitions import bigquery_table
    from atelier.features.repo import parse_definitions

    contents = parse_definitions(ctx.settings)
    join_keys = {e.name: e.join_key for e in contents.entities}
    tables: dict[str, tuple[Path, tuple[str, ...]]] = {}  # views may share a table: loaded once
    for view in contents.feature_views:
        template = getattr(view.batch_source, "table", None) or ""
        if template.startswith("features/"):
            cluster = tuple(join_keys[e] for e in view.entities)[:4]  # BigQuery clusters by 4 columns at most
            tables[bigquery_table(template)] = (ctx.settings.home / template.format(region=ctx.region), cluster)
    absent = sorted(t for t, (folder, _) in tables.items() if not (folder / MARKER).exists())
    if absent:
        raise AtelierError(f"region {ctx.region!r} has no feature tables to load for {', '.join(absent)}", where=str(ctx.paths.features(ctx.region)),
                           fix=f"run `atelier features compute -r {ctx.region}` first, or load without --features")
    found: list[Unit] = []
    for table, (folder, cluster) in sorted(tables.items()):
        found += _units_of(table, folder, cluster=cluster) or [Unit(table, folder, None, _empty_digest(dataset_info(folder)["schema"]), None, cluster)]
    return found


def _empty_digest(schema: pa.Schema) -> str:
    """An empty table's unit: named by its schema. It holds no row to list, so the table's
    existence says that it is loaded."""
    return "empty-" + hashlib.sha256(schema.serialize().to_pybytes()).hexdigest()[:26]


def _units_of(table: str, folder: Path, schema: pa.Schema | None = None, cluster: tuple[str, ...] = ()) -> list[Unit]:
    return [Unit(table, folder, f, _digest(f), schema, cluster) for f in part_files(folder)]


def _digest(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()[:32]


def load(ctx: RegionContext, client, target: Target, progress: Callable[[int], None] = lambda n: None,
         on_units: Callable[[int], None] = lambda n: None, features: bool = False) -> dict[str, TableReport]:
    """Bring the dataset in line with the region's lake and journal (and, with `features`, its
    feature tables); a report per table.

    `client` is a `google.cloud.bigquery.Client` (or the tests' stand-in). `on_units(n)` is told
    how many units will be loaded once that is known, `progress(1)` after each."""
    from atelier.regions import get_region

    if target.location != get_region(ctx.region).location:
        raise AtelierError(f"region {ctx.region!r} loads into {get_region(ctx.region).location}, not {target.location}")
    check_dataset(client, target)
    wanted = units(ctx, features)
    digests: dict[str, set[str]] = {}  # table -> the units it should hold
    empty: dict[str, set[str]] = {}  # table -> its empty unit, held once the table exists
    for u in wanted:
        digests.setdefault(u.table, set()).add(u.digest)
        if u.file is None:
            empty.setdefault(u.table, set()).add(u.digest)
    schemas: dict[str, set[str]] = {}  # feature table -> the columns of its view's table, as computed here
    for u in wanted:
        if u.table not in LAKE and u.table not in schemas:
            schemas[u.table] = set(dataset_info(u.dataset)["schema"].names)
    held, stale = {}, {}
    for t in digests:
        listed = _held_units(client, target, t)
        columns, clustering = (None, []) if listed is None or t not in schemas else _shape(client, target, t)
        # An empty table holds no row to list: it is loaded once it exists with every column of
        # its view (a feature added to an empty table's view loads it again, adding the column).
        complete = columns is None or schemas[t] <= columns
        held[t] = set() if listed is None else listed | (empty.get(t, set()) if complete else set())
        if columns is not None:
            stale[t] = sorted(columns - schemas[t] - {UNIT})
            _check_droppable(target, t, stale[t], clustering)  # before anything is sent
    reports = {t: TableReport(held=len(held[t] & digests[t])) for t in digests}
    missing = [u for u in wanted if u.digest not in held[u.table]]
    on_units(len(missing))
    for group in _groups(missing):
        table = group[0].table
        _drop_columns(client, target, table, stale.pop(table, []))  # BigQuery refuses an append that lacks a column of the table
        rows, job_id = _load_group(ctx, client, target, group)
        reports[table].loaded += len(group)
        reports[table].rows += rows
        reports[table].jobs.append(job_id)
        progress(len(group))
    for t, columns in stale.items():
        _drop_columns(client, target, t, columns)
    for t in digests:
        gone = sorted(held[t] - digests[t])
        if gone:
            listed = ", ".join(f"'{d}'" for d in gone)  # hex digests: nothing to escape
            _query(client, target, f"DELETE FROM `{target.table(t)}` WHERE {UNIT} IN ({listed})")
            reports[t].deleted = len(gone)
    return reports


def check_dataset(client, target: Target) -> None:
    """The dataset is in the region and under the region's key, or nothing is sent."""
    from google.api_core.exceptions import NotFound

    name = f"{target.project}.{target.dataset}"
    try:
        dataset = client.get_dataset(name)
    except NotFound:
        raise AtelierError(f"BigQuery dataset {name} does not exist", fix="apply the region's Terraform root (it creates the dataset), and pass its outputs") from None
    if dataset.location != target.location:
        raise AtelierError(f"BigQuery dataset {name} is in {dataset.location}, not in the region's {target.location}: nothing was sent",
                           fix="load each region into its own dataset (terraform/envs/<region>)")
    key = getattr(dataset.default_encryption_configuration, "kms_key_name", None)
    if key != target.kms_key:
        raise AtelierError(f"BigQuery dataset {name} is encrypted with {key or 'a Google-managed key'}, not the region's key {target.kms_key}: nothing was sent",
                           fix="apply the current terraform/modules/region (it sets the dataset's default key)")


def _held_units(client, target: Target, table: str) -> set[str] | None:
    """The units the table holds; None when it does not exist yet."""
    from google.api_core.exceptions import BadRequest, NotFound

    try:
        rows = _query(client, target, f"SELECT DISTINCT {UNIT} FROM `{target.table(table)}`")
    except NotFound:
        return None
    except BadRequest as e:
        raise AtelierError(f"table {target.table(table)} was not written by `atelier data load` ({e.message if hasattr(e, 'message') else e})",
                           fix="load into the region's own atelier dataset, or drop that table") from None
    return {r[0] for r in rows}


def _shape(client, target: Target, table: str) -> tuple[set[str], list[str]]:
    """The columns of a table BigQuery holds, and the ones it is clustered by."""
    held = client.get_table(target.table(table))
    return {f.name for f in held.schema}, list(held.clustering_fields or [])


def _check_droppable(target: Target, table: str, columns: list[str], clustering: list[str]) -> None:
    """A clustering column cannot be dropped: when the view no longer has one (its entities
    changed), the table must go, and nothing is sent before the user says so."""
    clustered = set(clustering) & set(columns)
    if clustered:
        raise AtelierError(f"table {target.table(table)} is clustered by {', '.join(sorted(clustered))}, which its view no longer has (its entities changed): nothing was sent",
                           fix=f"drop the table in BigQuery (`bq rm -t {target.project}:{target.dataset}.{table}`); the next load writes it whole")


def _drop_columns(client, target: Target, table: str, columns: list[str]) -> None:
    """Drop the columns of a feature table whose view no longer has them (a feature removed from
    a view): a metadata change in BigQuery, and what lets the table's new parts be appended."""
    for column in columns:  # one statement each; a column name is a view's feature name
        _query(client, target, f"ALTER TABLE `{target.table(table)}` DROP COLUMN IF EXISTS `{column}`")


def _query(client, target: Target, sql: str) -> list:
    return list(client.query(sql, location=target.location).result())


def _groups(units: list[Unit]) -> list[list[Unit]]:
    """Consecutive units of one table, up to `JOB_BYTES` of files each (at least one unit): one
    load job per group. A busy service writes a journal part per batch of events, and BigQuery
    allows 1,500 load jobs per table a day: a job per part would run out by the afternoon."""
    groups: list[list[Unit]] = []
    size = 0
    for unit in units:
        n = unit.file.stat().st_size if unit.file else 0
        if groups and groups[-1][0].table == unit.table and size + n <= JOB_BYTES:
            groups[-1].append(unit)
            size += n
        else:
            groups.append([unit])
            size = n
    return groups


def _plain_parquet(ctx: RegionContext, group: list[Unit]) -> tuple[io.BytesIO, int]:
    """The group's parts decrypted and written again as one plain Parquet file, in memory, each
    row with its own part's unit."""
    tables = []
    for unit in group:
        keys = ctx.keys if unit.client_data else None
        if unit.file:
            table = open_dataset(unit.dataset, keys, parts=[unit.file]).to_table()
        else:
            table = (unit.schema or dataset_info(unit.dataset)["schema"]).empty_table()
        if unit.schema is not None:
            table = table.select(unit.schema.names).cast(unit.schema)
        if unit.client_data and "client_id" in table.column_names:  # a product's popularity has no client
            assert_region_clients(ctx.settings, ctx.region, table.column("client_id"), where=f"{unit.table} part {unit.file}")
        tables.append(table.append_column(UNIT, pa.array([unit.digest] * table.num_rows, pa.string())))
    table = pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    buffer.seek(0)
    return buffer, table.num_rows


def _job_config(target: Target, unit: Unit):
    from google.cloud import bigquery

    config = bigquery.LoadJobConfig(
        source_format=bigquery.SourceFormat.PARQUET,
        write_disposition=bigquery.WriteDisposition.WRITE_APPEND,
        create_disposition=bigquery.CreateDisposition.CREATE_IF_NEEDED,
        destination_encryption_configuration=bigquery.EncryptionConfiguration(kms_key_name=target.kms_key),
    )
    # A feature added to a view (or an attribute to an import) reaches a table that exists: its
    # new column is added; BigQuery refuses the append otherwise ("Provided Schema does not match").
    config.schema_update_options = [bigquery.SchemaUpdateOption.ALLOW_FIELD_ADDITION]
    parquet = bigquery.ParquetOptions()
    parquet.enable_list_inference = True  # list columns (a product's attributes, ...) as ARRAYs
    config.parquet_options = parquet
    if unit.table == "events":
        config.time_partitioning = bigquery.TimePartitioning(type_=bigquery.TimePartitioningType.DAY, field="event_timestamp")
    clustering = CLUSTERING.get(unit.table) or list(unit.cluster)
    if clustering:
        config.clustering_fields = clustering
    return config


def _load_group(ctx: RegionContext, client, target: Target, group: list[Unit]) -> tuple[int, str]:
    """One load job for a group of units; (rows, the job id that holds them).

    The ids are `<base>`, `<base>_2`, `<base>_3`, ... where the base names the region, the table
    and the group's units: an id whose job failed is skipped (BigQuery keeps it), an id whose job
    succeeded means the group is loaded, and this run sends at most `ATTEMPTS` new jobs for it."""
    from google.api_core.exceptions import Conflict

    buffer, rows = _plain_parquet(ctx, group)
    table = group[0].table
    digest = group[0].digest if len(group) == 1 else hashlib.sha256(" ".join(sorted(u.digest for u in group)).encode()).hexdigest()[:32]
    base = f"atelier_load_{ctx.region}_{table}_{digest}"
    sent, last_error = 0, None
    for attempt in itertools.count(1):
        job_id = base if attempt == 1 else f"{base}_{attempt}"
        try:
            job = client.load_table_from_file(buffer, target.table(table), job_id=job_id, job_config=_job_config(target, group[0]),
                                              location=target.location, rewind=True)
            sent += 1
        except Conflict:  # this id ran before: the group is loaded if that job succeeded
            job = client.get_job(job_id, location=target.location)
        try:
            job.result()
            return rows, job_id
        except Exception as e:  # the job failed: its id cannot be used again
            last_error = e
        if sent >= ATTEMPTS:
            break
    names = (group[0].file.name if group[0].file else "the empty table") if len(group) == 1 else f"{len(group)} parts"
    raise AtelierError(f"BigQuery refused {names} of {table} (region {ctx.region!r}) {sent} times: {last_error}",
                       fix="the parts loaded so far stay; fix the cause and run the load again (it sends only what is missing)")


def bigquery_client(target: Target):
    """The region's BigQuery client (application default credentials: the platform's service account)."""
    from google.cloud import bigquery

    return bigquery.Client(project=target.project, location=target.location)
