"""Every byte the fast writer produces equals what Feast's own serializers produce (values, keys,
times, field names); the wire protocol that carries them is tests/features/test_resp.py's."""

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.helpers import _mmh3
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value
from feast.type_map import python_values_to_proto_values
from feast.value_type import ValueType
from google.protobuf.timestamp_pb2 import Timestamp

from atelier.features import redis_codec as rc

UTC = dt.timezone.utc
rng = np.random.default_rng(0)
CASES = {
    ValueType.STRING: pa.array(["a", "", None, "héllo wörld" * 20, "x" * 300]),
    ValueType.INT64: pa.array([0, 1, -1, 127, 128, 2**62, -(2**63), None] + rng.integers(-(2**40), 2**40, 50).tolist(), pa.int64()),
    ValueType.INT32: pa.array([0, -5, 2**31 - 1, None], pa.int32()),
    ValueType.DOUBLE: pa.array([0.0, -1.5, float("nan"), None, 1e300] + rng.normal(size=50).tolist()),
    ValueType.FLOAT: pa.array([0.0, 2.5, None], pa.float32()),
    ValueType.BOOL: pa.array([True, False, None]),
    ValueType.STRING_LIST: pa.array([["P1", "P22"], [], None, ["é" * 200], ["a", "", "b"]], pa.list_(pa.string())).slice(0),
    ValueType.INT64_LIST: pa.array([[1, 150, -1], [], None, [2**62, 0, 300] * 40, [1764720000123456]], pa.list_(pa.int64())),
    ValueType.UNIX_TIMESTAMP: pa.array([dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC), None, dt.datetime(1970, 1, 1, tzinfo=UTC)], pa.timestamp("us", "UTC")),
}


@pytest.mark.parametrize("value_type", list(CASES), ids=lambda v: v.name)
def test_values_match_feast(value_type):
    arr = CASES[value_type]
    ours = rc.encode_values(arr, value_type).to_pylist()
    feast = [v.SerializeToString() for v in python_values_to_proto_values(arr.to_numpy(zero_copy_only=False), value_type)]
    assert ours == feast
    if len(arr) > 2:  # a slice (non-zero offset) encodes the same
        assert rc.encode_values(arr.slice(1), value_type).to_pylist() == feast[1:]


def test_entity_keys_match_feast():
    ids = pa.array(["EU00000001", "x", "ünï", ""])
    ours = rc.entity_keys(ids, "client_id", ValueType.STRING, "atelier_eu").to_pylist()
    feast = [serialize_entity_key(EntityKey(join_keys=["client_id"], entity_values=[Value(string_val=i)]), 3) + b"atelier_eu" for i in ids.to_pylist()]
    assert ours == feast
    ints = pa.array([0, -3, 2**40], pa.int64())
    ours = rc.entity_keys(ints, "store", ValueType.INT64, "p").to_pylist()
    assert ours == [serialize_entity_key(EntityKey(join_keys=["store"], entity_values=[Value(int64_val=i)]), 3) + b"p" for i in ints.to_pylist()]


def test_timestamps_and_field_names_match_feast():
    times = [dt.datetime(2025, 1, 2, 23, 59, 59, tzinfo=UTC), dt.datetime(2025, 1, 2, 23, 59, 59, 123456, tzinfo=UTC), dt.datetime(1970, 1, 1, tzinfo=UTC)]
    expected = []
    for t in times:
        ts = Timestamp()
        ts.FromDatetime(t)
        expected.append(ts.SerializeToString())
    assert rc.encode_timestamps(pa.array(times, pa.timestamp("us", "UTC"))).to_pylist() == expected
    assert rc.field_name("client_activity", "spend_30d") == _mmh3("client_activity:spend_30d")


def test_varint_known_values():
    # Protobuf's own examples: 1 -> 01, 150 -> 96 01, 300 -> ac 02.
    assert rc.varint(np.array([1, 150, 300])).to_pylist() == [b"\x01", b"\x96\x01", b"\xac\x02"]
