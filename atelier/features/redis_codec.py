"""Feast's Redis layout, encoded a column at a time.

Feast stores an entity as one Redis hash: the key is the serialized entity key (version 3) plus
the project name; each feature is a field named by murmur3 of "view:feature" holding a
serialized `feast.types.Value` protobuf; `_ts:view` holds the row's event time as a
`google.protobuf.Timestamp`. Stock Feast builds those bytes one protobuf object at a time. Here
the same bytes are built for a whole column with Arrow kernels and numpy, and whole pipelines of
HSET commands are assembled into one RESP buffer (`atelier.features.resp`).
tests/features/test_redis_codec.py checks every byte against Feast's own serializers, so stock
`get_online_features` reads what this writes.
"""

from __future__ import annotations

import struct

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from feast.infra.online_stores.helpers import _mmh3
from feast.protos.feast.types.Value_pb2 import ValueType
from feast.value_type import ValueType as FeastValueType

EMPTY = pa.scalar(b"", pa.binary())


def as_binary(x) -> pa.Array:
    """Any binary-like array as plain `binary`, one chunk."""
    if isinstance(x, pa.ChunkedArray):
        x = x.combine_chunks()
    return x if x.type == pa.binary() else pc.cast(x, pa.binary())


def _fixed(matrix: np.ndarray) -> pa.Array:
    """Rows of a (n, w) uint8 matrix as a binary array of w-byte values."""
    n, w = matrix.shape
    fixed = pa.FixedSizeBinaryArray.from_buffers(pa.binary(w), n, [None, pa.py_buffer(np.ascontiguousarray(matrix))])
    return pc.cast(fixed, pa.binary())


def _ragged(matrix: np.ndarray, lengths: np.ndarray) -> pa.Array:
    """Row i is the first lengths[i] bytes of matrix[i]."""
    keep = np.arange(matrix.shape[1])[None, :] < lengths[:, None]
    data = matrix[keep]
    offsets = np.zeros(len(lengths) + 1, np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return pa.BinaryArray.from_buffers(pa.binary(), len(lengths), [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def varint(values: np.ndarray) -> pa.Array:
    """Protobuf base-128 varints of uint64 values (negative int64 as two's complement)."""
    v = values.astype(np.uint64)
    n = len(v)
    width = max(1, -(-int(v.max()).bit_length() // 7)) if n else 1  # bytes the largest value needs (lengths: one)
    matrix = np.zeros((n, width), np.uint8)
    lengths = np.ones(n, np.int64)
    for k in range(width):
        chunk = (v >> np.uint64(7 * k)) & np.uint64(0x7F)
        more = (v >> np.uint64(7 * (k + 1))) != 0
        matrix[:, k] = chunk.astype(np.uint8) | np.where(more, 0x80, 0).astype(np.uint8)
        lengths += more
    return _ragged(matrix, lengths)


def _tagged_fixed(tag: int, raw: np.ndarray, width: int) -> pa.Array:
    matrix = np.empty((len(raw), width + 1), np.uint8)
    matrix[:, 0] = tag
    matrix[:, 1:] = raw.view(np.uint8).reshape(len(raw), width)
    return _fixed(matrix)


def encode_values(column: pa.Array | pa.ChunkedArray, value_type: FeastValueType) -> pa.Array:
    """Serialized `feast.types.Value` for each element; nulls (and NaN) serialize to b''."""
    col = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    valid = pc.is_valid(col)
    if value_type == FeastValueType.STRING:
        s = as_binary(pc.cast(col, pa.string()))
        out = pc.binary_join_element_wise(pa.scalar(b"\x12"), varint(pc.fill_null(pc.binary_length(s), 0).to_numpy()), pc.fill_null(s, b""), EMPTY)
    elif value_type in (FeastValueType.INT64, FeastValueType.INT32, FeastValueType.UNIX_TIMESTAMP, FeastValueType.BOOL):
        if value_type == FeastValueType.UNIX_TIMESTAMP:
            # whole seconds, the fraction dropped, as Feast's own conversion does
            ints = pc.cast(pc.cast(col, pa.timestamp("s", col.type.tz) if pa.types.is_timestamp(col.type) else pa.int64(), safe=False), pa.int64())
        else:
            ints = pc.cast(col, pa.int64())
        tag = {FeastValueType.INT64: 0x20, FeastValueType.INT32: 0x18, FeastValueType.UNIX_TIMESTAMP: 0x40, FeastValueType.BOOL: 0x38}[value_type]
        if value_type == FeastValueType.UNIX_TIMESTAMP:
            # Stock Feast turns a missing time (NaT) into the smallest int64, not into an empty
            # Value; keep byte-for-byte compatibility.
            ints, valid = pc.fill_null(ints, np.iinfo(np.int64).min), pa.array(np.ones(len(col), bool))
        v = pc.fill_null(ints, 0).to_numpy(zero_copy_only=False).astype(np.int64)
        out = pc.binary_join_element_wise(pa.scalar(bytes([tag])), varint(v), EMPTY)
    elif value_type in (FeastValueType.DOUBLE, FeastValueType.FLOAT):
        f = pc.fill_null(col, 0).to_numpy(zero_copy_only=False)
        valid = pc.and_(valid, pa.array(~np.isnan(f)))
        if value_type == FeastValueType.DOUBLE:
            out = _tagged_fixed(0x29, f.astype("<f8"), 8)
        else:
            out = _tagged_fixed(0x35, f.astype("<f4"), 4)
    elif value_type == FeastValueType.STRING_LIST:
        out = _string_lists(col)
    elif value_type == FeastValueType.INT64_LIST:
        out = _int64_lists(col)
    else:
        raise NotImplementedError(f"fast encoding of {value_type} is not supported")
    return pc.if_else(valid, out, EMPTY)


def _string_lists(col: pa.Array) -> pa.Array:
    """`string_list_val` (field 12): each string as a length-delimited field 1 of StringList."""
    col = pc.cast(col, pa.list_(pa.string()))
    offsets = pc.fill_null(col.offsets, 0) if col.null_count else col.offsets
    flat = as_binary(col.values.slice(offsets[0].as_py(), offsets[-1].as_py() - offsets[0].as_py()))
    elements = pc.binary_join_element_wise(pa.scalar(b"\n"), varint(pc.binary_length(flat).to_numpy()), flat, EMPTY)
    rebased = pc.subtract(offsets, offsets[0])
    joined = pc.binary_join(pa.ListArray.from_arrays(rebased, elements), EMPTY)
    joined = pc.fill_null(joined, b"")
    return pc.binary_join_element_wise(pa.scalar(b"b"), varint(pc.binary_length(joined).to_numpy()), joined, EMPTY)


def _int64_lists(col: pa.Array) -> pa.Array:
    """`int64_list_val` (field 14): an Int64List whose field 1 is packed varints."""
    col = pc.cast(col, pa.list_(pa.int64()))
    offsets = pc.fill_null(col.offsets, 0) if col.null_count else col.offsets
    flat = col.values.slice(offsets[0].as_py(), offsets[-1].as_py() - offsets[0].as_py())
    elements = varint(pc.fill_null(flat, 0).to_numpy(zero_copy_only=False).astype(np.int64))
    rebased = pc.subtract(offsets, offsets[0])
    packed = pc.fill_null(pc.binary_join(pa.ListArray.from_arrays(rebased, elements), EMPTY), b"")
    size = pc.binary_length(packed).to_numpy()
    inner = pc.if_else(pa.array(size > 0), pc.binary_join_element_wise(pa.scalar(b"\n"), varint(size), packed, EMPTY), EMPTY)
    return pc.binary_join_element_wise(pa.scalar(b"r"), varint(pc.binary_length(inner).to_numpy()), inner, EMPTY)


def encode_timestamps(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Serialized `google.protobuf.Timestamp` (seconds, nanos; zero fields omitted)."""
    col = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    ns = pc.cast(pc.cast(col, pa.timestamp("ns", "UTC")), pa.int64()).to_numpy(zero_copy_only=False)
    seconds, nanos = np.divmod(ns, 1_000_000_000)
    sec = pc.if_else(pa.array(seconds != 0), pc.binary_join_element_wise(pa.scalar(b"\x08"), varint(seconds), EMPTY), EMPTY)
    nan = pc.if_else(pa.array(nanos != 0), pc.binary_join_element_wise(pa.scalar(b"\x10"), varint(nanos), EMPTY), EMPTY)
    return pc.binary_join_element_wise(sec, nan, EMPTY)


def decode_timestamp_seconds(raw: bytes | None) -> float:
    """Seconds since epoch from a serialized Timestamp (0 when absent)."""
    if not raw:
        return 0.0
    from google.protobuf.timestamp_pb2 import Timestamp

    ts = Timestamp.FromString(raw)
    return ts.seconds + ts.nanos / 1e9


def entity_keys(column: pa.Array | pa.ChunkedArray, join_key: str, value_type: FeastValueType, project: str) -> pa.Array:
    """Feast's Redis keys (entity key serialization version 3, single join key) for each value."""
    jk = join_key.encode()
    prefix = struct.pack("<I", 1) + struct.pack("<I", ValueType.STRING) + struct.pack("<I", len(jk)) + jk
    if value_type == FeastValueType.STRING:
        vals = as_binary(pc.cast(column, pa.string()))
        lengths = pc.binary_length(vals).to_numpy().astype("<u4")
        head = np.empty((len(lengths), 8), np.uint8)
        head[:, :4] = np.frombuffer(struct.pack("<I", ValueType.STRING), np.uint8)
        head[:, 4:] = lengths.view(np.uint8).reshape(-1, 4)
        return pc.binary_join_element_wise(pa.scalar(prefix), _fixed(head), vals, pa.scalar(project.encode()), EMPTY)
    if value_type == FeastValueType.INT64:
        v = pc.cast(column, pa.int64()).to_numpy().astype("<i8")
        body = np.empty((len(v), 16), np.uint8)
        body[:, :8] = np.frombuffer(struct.pack("<II", ValueType.INT64, 8), np.uint8)
        body[:, 8:] = v.view(np.uint8).reshape(-1, 8)
        return pc.binary_join_element_wise(pa.scalar(prefix), _fixed(body), pa.scalar(project.encode()), EMPTY)
    raise NotImplementedError(f"fast keys for {value_type} entities are not supported")


def field_name(view: str, feature: str) -> bytes:
    return _mmh3(f"{view}:{feature}")
