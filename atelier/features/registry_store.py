"""Feast's file registry, written atomically.

Feast's `FileRegistryStore` rewrites `registry.db` in place: it truncates the file, then writes
the new bytes. A process killed between the two (during `atelier features apply`, or when
`materialize` records how far it got) leaves an empty or half-written registry, and every later
command of that region fails to parse it. This store writes the new registry beside the old
one, fsyncs it and renames it into place, so a crash leaves the previous registry or the new
one. Feast loads it by class path (`registry_store_type` in each region's feature_store.yaml), so
stock `feast` commands use it too.
"""

from __future__ import annotations

import uuid

from feast.infra.registry.file import FileRegistryStore
from feast.protos.feast.core.Registry_pb2 import Registry as RegistryProto
from feast.utils import _utc_now

from atelier.io import write_bytes_atomic


class AtomicFileRegistryStore(FileRegistryStore):
    def _write_registry(self, registry_proto: RegistryProto) -> None:
        registry_proto.version_id = str(uuid.uuid4())
        registry_proto.last_updated.FromDatetime(_utc_now())
        write_bytes_atomic(self._filepath, registry_proto.SerializeToString())
