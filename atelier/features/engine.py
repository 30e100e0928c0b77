"""Feast batch engine: materialization that writes Redis at the speed of Redis.

Plugged in through Feast's `batch_engine` setting, so `feast materialize` and
`FeatureStore.materialize` use it too. For a plain feature view it asks the offline store for the
latest row per entity (Feast's own dedup; from BigQuery, streamed a page at a time through the
Storage Read API, see `latest_batches`), then:

* Redis (standalone): encodes keys, fields and values a column at a time in Feast's exact layout
  (`redis_codec`) and sends whole pipelines as one RESP buffer per chunk. It keeps Feast's
  "newer wins" rule: a row is written only if it is newer than what the hash holds.
* any other online store: Feast's own conversion and `online_write_batch`, chunked.

Views with transformations, aggregations or filters take Feast's stock local plan unchanged.
Client-keyed rows are checked against the region before anything is sent (residency).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from feast import FeatureView
from feast.infra.common.materialization_job import MaterializationJobStatus, MaterializationTask
from feast.infra.compute_engines.local.compute import LocalComputeEngine
from feast.infra.compute_engines.local.job import LocalMaterializationJob
from feast.infra.online_stores.redis import RedisOnlineStore, RedisType, _versioned_fv_name
from feast.infra.registry.base_registry import BaseRegistry
from feast.repo_config import FeastConfigBaseModel, RepoConfig
from feast.utils import _convert_arrow_to_proto

from atelier import crash
from atelier.features import redis_codec as rc
from atelier.features import resp
from atelier.features.offline_store import settings_of
from atelier.protect.residency import assert_region_clients

_report: contextvars.ContextVar[Callable[[str, int], None] | None] = contextvars.ContextVar("atelier_report", default=None)


@contextlib.contextmanager
def reporting(callback: Callable[[str, int], None]) -> Iterator[None]:
    """Receive (view name, rows written) as materialization progresses."""
    token = _report.set(callback)
    try:
        yield
    finally:
        _report.reset(token)


def _progress(view: str, n: int) -> None:
    crash.point("materialize.chunk")  # after each chunk is in the store (tests: a kill mid-materialize)
    cb = _report.get()
    if cb:
        cb(view, n)


class AtelierEngineConfig(FeastConfigBaseModel):
    type: Literal["atelier.features.engine.AtelierEngine"] = "atelier.features.engine.AtelierEngine"
    chunk_rows: int = 20_000


class AtelierEngine(LocalComputeEngine):
    def __init__(self, *, repo_config: RepoConfig, offline_store, online_store, chunk_rows: int = 20_000, **kwargs):
        kwargs.pop("type", None)
        super().__init__(backend="pandas", repo_config=repo_config, offline_store=offline_store, online_store=online_store)
        self.chunk_rows = chunk_rows

    def _materialize_one(self, registry: BaseRegistry, task: MaterializationTask, **kwargs) -> LocalMaterializationJob:
        view = task.feature_view
        if _needs_plan(view):
            return super()._materialize_one(registry, task, **kwargs)
        job_id = f"{view.name}-{task.start_time}-{task.end_time}"
        try:
            for table in latest_batches(self.repo_config, self.offline_store, view, task.start_time, task.end_time):
                write_online(self.repo_config, self.online_store, view, table, self.chunk_rows)
            return LocalMaterializationJob(job_id=job_id, status=MaterializationJobStatus.SUCCEEDED)
        except Exception as e:  # Feast reports the job's error to the caller
            return LocalMaterializationJob(job_id=job_id, status=MaterializationJobStatus.ERROR, error=e)


def _needs_plan(view) -> bool:
    return bool(
        getattr(view, "feature_transformation", None)
        or getattr(view, "aggregations", None)
        or getattr(view, "filter", None)
        or not isinstance(view, FeatureView)
        or len(view.entity_columns) != 1
    )


def _in_source(view: FeatureView, column: str) -> str:
    """A column of the view as its source names it (the inverse of the source's field mapping)."""
    return {v: k for k, v in (view.batch_source.field_mapping or {}).items()}.get(column, column)


def _latest_job(config: RepoConfig, offline_store, view: FeatureView, start, end):
    """The offline store's job for the latest row per entity (Feast's own dedup)."""
    source = view.batch_source
    return offline_store.pull_latest_from_table_or_query(
        config=config,
        data_source=source,
        join_key_columns=[_in_source(view, c.name) for c in view.entity_columns],
        feature_name_columns=[_in_source(view, f.name) for f in view.features],
        timestamp_field=source.timestamp_field,
        created_timestamp_column=source.created_timestamp_column or None,
        start_date=start,
        end_date=end,
    )


def _renamed(view: FeatureView, table: pa.Table) -> pa.Table:
    mapping = view.batch_source.field_mapping
    return table.rename_columns([mapping.get(c, c) for c in table.column_names]) if mapping else table


def latest_rows(config: RepoConfig, offline_store, view: FeatureView, start, end) -> pa.Table:
    return _renamed(view, _latest_job(config, offline_store, view, start, end).to_arrow())


def latest_batches(config: RepoConfig, offline_store, view: FeatureView, start, end) -> Iterator[pa.Table]:
    """The latest rows as tables of bounded size. From BigQuery they stream through the Storage
    Read API, a page at a time, so a view of tens of millions of entities is never whole in
    memory (Feast's own `to_arrow` fetches the whole result); from any other store, one table."""
    job = _latest_job(config, offline_store, view, start, end)
    if getattr(config.offline_store, "type", None) != "bigquery":
        yield _renamed(view, job.to_arrow())
        return
    if view.entity_columns[0].name == "client_id":
        _check_bigquery_roster(job.client, config, view)
    with job._query_generator() as query:  # the SQL Feast built for the view
        rows = job.client.query(query, location=config.offline_store.location).result()
        reader = job.client._ensure_bqstorage_client()  # the Storage Read API client, with the client's credentials
        for batch in rows.to_arrow_iterable(bqstorage_client=reader):
            if batch.num_rows:
                yield _renamed(view, pa.Table.from_batches([batch]))


def _check_bigquery_roster(client, config: RepoConfig, view: FeatureView) -> None:
    """Refuse, before a row is read, a client-keyed view whose table holds clients that the
    region's own `clients` table (its roster, loaded by `atelier data load`) does not. The check
    is one anti-join run by BigQuery, so a roster of tens of millions never comes here."""
    source = view.batch_source
    key = _in_source(view, "client_id")
    roster = f"`{config.offline_store.dataset}.clients`"
    sql = f"""SELECT client_id, COUNT(*) OVER () AS outside
FROM (SELECT DISTINCT v.{key} AS client_id FROM {source.get_table_query_string()} AS v
      LEFT JOIN {roster} AS r ON v.{key} = r.client_id
      WHERE r.client_id IS NULL AND v.{key} IS NOT NULL)
ORDER BY client_id
LIMIT 5"""
    found = list(client.query(sql, location=config.offline_store.location).result())
    if found:
        from atelier.protect.residency import ResidencyError

        raise ResidencyError(
            f"{found[0][1]} client(s) that {roster.strip('`')} does not hold would be written to the online store of project {config.project!r}",
            where=f"BigQuery table {source.get_table_query_string().strip('`')}, view {view.name}",
            details=[f"client_id {row[0]!r}" for row in found],
            fix="a client belongs to the region of its country: rebuild this region's feature tables from its own data (`atelier data load`, then the feature SQL)",
        )


def write_online(config: RepoConfig, online_store, view: FeatureView, table: pa.Table, chunk_rows: int = 20_000) -> int:
    if table.num_rows == 0:
        return 0
    key = view.entity_columns[0]
    if key.name == "client_id" and hasattr(config.offline_store, "region"):
        region = config.offline_store.region
        assert_region_clients(settings_of(config), region, table.column("client_id"), where=f"online store, view {view.name}")
    if isinstance(online_store, RedisOnlineStore) and config.online_store.redis_type == RedisType.redis:
        return RedisWriter(config, online_store, view, chunk_rows).write(table)
    join_types = {c.name: c.dtype.to_value_type() for c in view.entity_columns}
    written = 0
    for batch in table.to_batches(max_chunksize=config.materialization_config.online_write_batch_size or chunk_rows):
        rows = _convert_arrow_to_proto(batch, view, join_types)
        online_store.online_write_batch(config=config, table=view, data=rows, progress=None)
        written += batch.num_rows
        _progress(view.name, batch.num_rows)
    return written


class RedisWriter:
    """Writes one view's rows in Feast's Redis layout, a chunk per RESP buffer."""

    def __init__(self, config: RepoConfig, store: RedisOnlineStore, view: FeatureView, chunk_rows: int):
        self.client = store._get_client(config.online_store)
        self.view = view
        name = _versioned_fv_name(view, config)
        self.ts_field = f"_ts:{name}".encode()
        self.fields = [rc.field_name(name, f.name) for f in view.features]
        self.types = [f.dtype.to_value_type() for f in view.features]
        self.key = view.entity_columns[0]
        self.project = config.project
        self.ttl = config.online_store.key_ttl_seconds
        self.dedup = not config.online_store.skip_dedup
        self.chunk_rows = chunk_rows
        self.timestamp_field = view.batch_source.timestamp_field

    def write(self, table: pa.Table) -> int:
        written = 0
        for start in range(0, table.num_rows, self.chunk_rows):
            chunk = table.slice(start, self.chunk_rows)
            n = chunk.num_rows
            keys = self.keys(chunk.column(self.key.name))
            if self.dedup:
                newer = self._newer_than_stored(keys, chunk.column(self.timestamp_field))
                if newer is not None:
                    chunk, keys = chunk.filter(newer), keys.filter(newer)
            if chunk.num_rows:
                values = [rc.encode_values(chunk.column(f.name), t) for f, t in zip(self.view.features, self.types)]
                self.send_rows(keys, values + [rc.encode_timestamps(chunk.column(self.timestamp_field))])
                written += chunk.num_rows
            _progress(self.view.name, n)
        return written

    def keys(self, entities: pa.Array | pa.ChunkedArray) -> pa.Array:
        """The Redis keys of these entities (the view's join key)."""
        return rc.entity_keys(entities, self.key.name, self.key.dtype.to_value_type(), self.project)

    def start_read(self, keys: pa.Array) -> resp.Pending:
        """Each key's stored values (the view's features in order, then the row time; empty where
        absent), as `resp.Cells`: asked now, read by the `result` of what this returns."""
        return resp.Pending(self.client, resp.concat(resp.hmget_commands(keys, self.fields + [self.ts_field])), len(keys), cells=len(self.fields) + 1)

    def send_rows(self, keys: pa.Array, values: list[pa.Array] | resp.Cells) -> None:
        """HSET of encoded values: one array (or cell column) per feature in the view's order, then the row times."""
        self.start_rows(keys, values).result()

    def start_rows(self, keys: pa.Array, values: list[pa.Array] | resp.Cells, pending: resp.Pending | None = None) -> resp.Pending:
        """`send_rows`, sent now, its replies read by the `result` of what this returns; with
        `pending`, sent after the commands it holds, on its connection (and it is returned)."""
        commands = resp.hset_commands(keys, self.fields + [self.ts_field], values, self.ttl)
        replies = len(keys) * (2 if self.ttl else 1)
        if pending is None:
            return resp.Pending(self.client, commands, replies, discard=True)
        pending.send(commands, replies)
        return pending

    def _newer_than_stored(self, keys: pa.Array, ts: pa.ChunkedArray) -> pa.Array | None:
        """Mask of rows newer than the hash's stored `_ts`, or None when nothing is stored yet."""
        stored = self._send(resp.concat(resp.hmget_commands(keys, self.ts_field)), len(keys))
        present = [i for i, r in enumerate(stored) if r[0] is not None]
        if not present:
            return None
        new_s = pc.cast(pc.cast(ts, pa.timestamp("us", "UTC")), pa.int64()).to_numpy(zero_copy_only=False) / 1e6
        keep = np.ones(len(keys), bool)
        for i in present:
            keep[i] = new_s[i] > rc.decode_timestamp_seconds(stored[i][0]) + 1e-7
        return pa.array(keep)

    def _send(self, buffer: memoryview, replies: int) -> list:
        return resp.send(self.client, buffer, replies)
