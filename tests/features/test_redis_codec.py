"""Every byte the fast writer produces equals what Feast's own serializers produce."""

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
from atelier.features import resp

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


def test_hset_commands_are_valid_resp():
    cmds = resp.hset_commands(pa.array([b"k1", b"k2"]), [b"f1", b"ff"], [pa.array([b"v1", b""]), pa.array([b"x", b"yy"])], ttl_seconds=10)
    assert bytes(cmds) == (
        b"*6\r\n$4\r\nHSET\r\n$2\r\nk1\r\n$2\r\nf1\r\n$2\r\nv1\r\n$2\r\nff\r\n$1\r\nx\r\n"
        b"*3\r\n$6\r\nEXPIRE\r\n$2\r\nk1\r\n$2\r\n10\r\n"
        b"*6\r\n$4\r\nHSET\r\n$2\r\nk2\r\n$2\r\nf1\r\n$0\r\n\r\n$2\r\nff\r\n$2\r\nyy\r\n"
        b"*3\r\n$6\r\nEXPIRE\r\n$2\r\nk2\r\n$2\r\n10\r\n"
    )


def test_pipelined_replies_come_back_in_order_and_an_error_reply_raises(redis_servers):
    """`Pending` reads a pipeline's replies itself (hiredis, not redis-py's per-reply path): in
    order, across many socket reads, and an error reply raises and closes the connection."""
    import redis

    server = redis_servers["eu"]
    client = server.client()
    client.flushall()
    keys = pa.array([b"k%05d" % i for i in range(3000)])
    big = pa.array([bytes([i % 251]) * 200 for i in range(3000)])
    resp.Pending(client, resp.hset_commands(keys, [b"f", b"g"], [big, keys]), 3000).result()
    expected = [[k, v] for k, v in zip(keys.to_pylist(), big.to_pylist())]
    assert resp.Pending(client, resp.concat(resp.hmget_commands(keys, [b"g", b"f"])), 3000).result() == expected  # 600 KB: many socket reads
    resp3 = redis.Redis(host="127.0.0.1", port=server.port, username=server.username, password=server.password, protocol=3)
    assert resp.Pending(resp3, resp.concat(resp.hmget_commands(keys, [b"g", b"f"])), 3000).result() == expected  # redis-py's own path

    client.set(b"plain", b"x")
    wrong = resp.hset_commands(pa.array([b"k00000", b"plain", b"k00001"]), [b"f"], [pa.array([b"a", b"b", b"c"])])
    with pytest.raises(redis.exceptions.ResponseError, match="WRONGTYPE"):
        resp.Pending(client, wrong, 3).result()
    assert client.hget(b"k00001", b"f") == b"c"  # not the unread reply (1): that connection was closed, not reused

    # a pipeline sent in pieces on one connection (`Pending.send`): every piece's replies read once
    pending = resp.Pending(client, resp.hset_commands(keys[:1000], [b"f"], [keys[:1000]]), 1000, discard=True)
    for lo in range(1000, 3000, 500):
        pending.send(resp.hset_commands(keys[lo:lo + 500], [b"f"], [big[lo:lo + 500]]), 500)
    assert pending.result() is None
    assert client.hmget(b"k00999", b"f") == [b"k00999"] and client.hget(b"k02999", b"f") == big[2999].as_py()
    assert resp.Pending(client, resp.concat(resp.hmget_commands(keys[:2], [b"f"])), 2).result() == [[b"k00000"], [b"k00001"]]  # nothing left unread


def test_replies_read_as_cells_or_checked_only_from_the_socket(redis_servers):
    """`Pending(cells=k)` scans HMGET replies off the socket into cells (a nil value is empty) and
    `discard` only checks replies: the same values as redis-py's objects, across many socket
    reads; RESP3 takes redis-py's path to the same cells; an error reply raises, the connection
    closed, and a reply of another kind is refused."""
    import redis

    server = redis_servers["eu"]
    client = server.client()
    client.flushall()
    keys = pa.array([b"k%05d" % i for i in range(3000)])
    big = pa.array([bytes([i % 251]) * (i % 400) for i in range(3000)])  # some empty
    assert resp.Pending(client, resp.hset_commands(keys, [b"f", b"g"], [big, keys], ttl_seconds=600), 6000, discard=True).result() is None
    asked = resp.concat(resp.hmget_commands(keys, [b"g", b"absent", b"f"]))
    rows = resp.Pending(client, asked, 3000).result()
    resp3 = redis.Redis(host="127.0.0.1", port=server.port, username=server.username, password=server.password, protocol=3)
    values = sum(len(v or b"") for row in rows for v in row)
    for pipe, raw in ((client, True), (resp3, False)):
        cells = resp.Pending(pipe, asked, 3000, cells=3).result()
        assert [[cells.value(i, j) for j in range(3)] for i in range(3000)] == [[r or None for r in row] for row in rows]
        assert (cells.data.size > values) == raw  # over the bytes received (RESP framing included), or over the values joined
    assert rows[5] == [b"k00005", None, bytes([5]) * 5] and rows[0][2] == b""

    client.set(b"plain", b"x")
    wrong = resp.hset_commands(pa.array([b"k00000", b"plain", b"k00001"]), [b"f"], [pa.array([b"a", b"b", b"c"])])
    with pytest.raises(redis.exceptions.ResponseError, match="WRONGTYPE"):
        resp.Pending(client, wrong, 3, discard=True).result()
    assert client.hget(b"k00001", b"f") == b"c"
    with pytest.raises(redis.exceptions.InvalidResponse, match="not what was asked for"):
        resp.Pending(client, resp.concat(resp.hmget_commands(keys[:2], [b"f"])), 2, cells=3).result()  # arrays of 1, not 3
    assert client.ping()
