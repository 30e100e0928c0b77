"""Online reads of a fixed feature list: what a model was trained with, read the way it serves.

A model records the exact feature references it was trained on ("client_activity:spend_30d",
...). `OnlineFeatures` reads exactly those, for a batch of entities, and checks once, up front,
that the caller may read them (Feast permissions).

On Redis it reads Feast's layout directly: all of an entity's views live in one hash, so one
HMGET per entity (one pipeline per batch) fetches every feature, where Feast's generic path
builds protobuf responses and type-converts them per value. On any other store it calls Feast's
`get_online_features`. Both return the same values; tests/features/test_online.py compares them.
"""

from __future__ import annotations

import struct
from datetime import datetime, timedelta, timezone

import pyarrow as pa
from feast import FeatureService, FeatureStore
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.redis import RedisOnlineStore, RedisType, _versioned_fv_name
from feast.permissions.user import User
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.value_type import ValueType as FeastValueType
from google.protobuf.timestamp_pb2 import Timestamp
from redis.backoff import NoBackoff
from redis.retry import Retry

from atelier.errors import AtelierError
from atelier.features import redis_codec as rc
from atelier.features import resp
from atelier.features.redis_codec import field_name
from atelier.protect import access

_INT64_MIN = -(2**63)


def feature_refs(store: FeatureStore, service: str | FeatureService) -> list[str]:
    """The exact "view:feature" list of a feature service."""
    fs = store.get_feature_service(service) if isinstance(service, str) else service
    return [f"{p.name_to_use()}:{f.name}" for p in fs.feature_view_projections for f in p.features]


def _decode(raw: bytes | None):
    """A serialized feast Value as a plain Python value (None when absent or null)."""
    if not raw:
        return None
    v = ValueProto.FromString(raw)
    kind = v.WhichOneof("val")
    if kind is None:
        return None
    value = getattr(v, kind)
    if kind.endswith("_list_val"):
        return list(value.val)
    if kind == "unix_timestamp_val":
        return None if value == _INT64_MIN else datetime.fromtimestamp(value, tz=timezone.utc)
    return value


def _timestamp(raw: bytes | None) -> datetime | None:
    """A serialized `google.protobuf.Timestamp` (Feast's `_ts:<view>` field) as a datetime."""
    if not raw:
        return None
    ts = Timestamp.FromString(raw)
    return datetime.fromtimestamp(ts.seconds, tz=timezone.utc) + timedelta(microseconds=ts.nanos // 1000)


class OnlineFeatures:
    """`fail_fast`: no retries on an unreachable Redis (redis-py retries with backoff for up to
    ~10 s by default); a serving path answers with a fallback instead of waiting."""

    def __init__(self, store: FeatureStore, refs: list[str], user: User | None = None, fail_fast: bool = True, timestamps: tuple[str, ...] = ()):
        """`timestamps`: views whose row time is read too, as column `_ts:<view>` (a datetime, or
        None where the entity has no row): the real-time overlay needs to know what a batch row holds."""
        if not refs:
            raise AtelierError("no features requested")
        self.store = store
        self.refs = list(dict.fromkeys(refs))  # a feature asked for twice is read once
        self.names = [r.split(":", 1)[1] for r in self.refs]
        views = {r.split(":", 1)[0] for r in self.refs}
        try:
            self.views = [store.get_feature_view(v) for v in sorted(views)]
        except Exception as e:
            raise AtelierError(f"feature views not found in region {store.project!r}: {e}", fix="run `atelier features apply`") from None
        self.timestamps = list(timestamps)
        unknown = set(self.timestamps) - views
        if unknown:
            raise AtelierError(f"row times asked of views that are not read: {sorted(unknown)}")
        access.authorize_online_read(store, self.views, user)
        join_keys = {c.name for v in self.views for c in v.entity_columns}
        if len(join_keys) != 1:
            raise AtelierError(f"features must share one entity, found join keys {sorted(join_keys)}")
        self.join_key = join_keys.pop()
        online = store._get_provider().online_store
        config = store.config
        self._redis = None
        if isinstance(online, RedisOnlineStore) and config.online_store.redis_type == RedisType.redis:
            self._redis = online._get_client(config.online_store)
            if fail_fast:
                self._redis.set_retry(Retry(NoBackoff(), 0))
            by_name = {v.name: v for v in self.views}
            self._fields = [field_name(_versioned_fv_name(by_name[r.split(":")[0]], config), n) for r, n in zip(self.refs, self.names)]
            self._fields += [f"_ts:{_versioned_fv_name(by_name[v], config)}".encode() for v in self.timestamps]
            jk = self.join_key.encode()
            self._prefix = struct.pack("<III", 1, 2, len(jk)) + jk
            self._suffix = config.project.encode()

    def _key(self, entity_id: str) -> bytes:
        v = entity_id.encode()
        return self._prefix + struct.pack("<II", 2, len(v)) + v + self._suffix

    def get(self, ids: list[str]) -> tuple[dict[str, list], list[bool]]:
        """Columns of values for `ids`, and for each id whether the store holds anything for it."""
        if self._redis is not None:
            if len(ids) == 1:
                rows = [self._redis.hmget(self._key(ids[0]), self._fields)]
            elif len(ids) > 64:  # big batches: the commands built a column at a time (redis_codec)
                keys = rc.entity_keys(pa.array(ids, pa.string()), self.join_key, FeastValueType.STRING, self._suffix.decode())
                rows = resp.send(self._redis, resp.concat(resp.hmget_commands(keys, self._fields)), len(ids))
            else:
                with self._redis.pipeline(transaction=False) as pipe:
                    for i in ids:
                        pipe.hmget(self._key(i), self._fields)
                    rows = pipe.execute()
            n = len(self.names)
            found = [any(x is not None for x in row[:n]) for row in rows]
            cols = {name: [_decode(row[j]) for row in rows] for j, name in enumerate(self.names)}
            for j, view in enumerate(self.timestamps):
                cols[f"_ts:{view}"] = [_timestamp(row[n + j]) for row in rows]
            return cols, found
        response = self.store.get_online_features(features=self.refs, entity_rows=[{self.join_key: i} for i in ids]).to_dict()
        cols = {n: response[n] for n in self.names}
        found = [any(cols[n][k] is not None for n in self.names) for k in range(len(ids))]
        for view in self.timestamps:
            cols[f"_ts:{view}"] = self._row_times(view, ids)
        return cols, found

    def _row_times(self, view: str, ids: list[str]) -> list[datetime | None]:
        """The row time of `view` for each id, from the online store's own read (any store)."""
        fv = next(v for v in self.views if v.name == view)
        keys = [EntityKeyProto(join_keys=[self.join_key], entity_values=[ValueProto(string_val=i)]) for i in ids]
        rows = self.store._get_provider().online_read(config=self.store.config, table=fv, entity_keys=keys)
        return [None if ts is None else (ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)) for ts, _values in rows]

    def get_one(self, entity_id: str) -> dict | None:
        cols, found = self.get([entity_id])
        return {n: v[0] for n, v in cols.items()} if found[0] else None


def stock_key(project: str, join_key: str, entity_id: str) -> bytes:
    """Feast's own Redis key, for tests and baselines."""
    ek = EntityKeyProto(join_keys=[join_key], entity_values=[ValueProto(string_val=entity_id)])
    return serialize_entity_key(ek, 3) + project.encode()
