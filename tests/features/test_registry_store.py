"""The region's Feast registry is replaced atomically: an interrupted write leaves the previous one."""

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from feast.infra.registry.file import FileRegistryStore
from feast.protos.feast.core.Registry_pb2 import Registry as RegistryProto
from feast.repo_config import RegistryConfig

from atelier.features.registry_store import AtomicFileRegistryStore


def _proto(project: str) -> RegistryProto:
    proto = RegistryProto()
    proto.project_metadata.add().project = project
    return proto


class _Interrupted:
    """A registry whose bytes never arrive: the process dies while they are being produced."""

    version_id = ""
    last_updated = Timestamp()

    def SerializeToString(self) -> bytes:
        raise OSError("killed")


def _interrupted_write(store_class, path):
    store = store_class(RegistryConfig(path=str(path)), path.parent)
    store.update_registry_proto(_proto("before"))
    with pytest.raises(OSError, match="killed"):
        store.update_registry_proto(_Interrupted())
    return store


def test_stock_feast_loses_the_registry_on_an_interrupted_write(tmp_path):
    """What the plug-in store is for: Feast's own store truncates the file before writing it."""
    store = _interrupted_write(FileRegistryStore, tmp_path / "registry.db")
    assert (tmp_path / "registry.db").stat().st_size == 0  # truncated before the new bytes came
    assert [p.project for p in store.get_registry_proto().project_metadata] == []


def test_the_atomic_store_keeps_the_previous_registry(tmp_path):
    store = _interrupted_write(AtomicFileRegistryStore, tmp_path / "registry.db")
    assert [p.project for p in store.get_registry_proto().project_metadata] == ["before"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["registry.db"]


def test_every_region_uses_it(settings):
    from atelier.features import repo

    assert repo.feature_store(settings, "eu").config.registry.registry_store_type.endswith("AtomicFileRegistryStore")
