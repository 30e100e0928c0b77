"""Redis's wire protocol as atelier speaks it (atelier.features.resp): HSET pipelines built as one
buffer, sent in pieces on a held connection, and replies scanned off the socket, against a real
redis-server."""

import pyarrow as pa
import pytest

from atelier.features import resp


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
