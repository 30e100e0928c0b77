"""A batch's events added to its clients' fresh rows on Redis, in the stored bytes, per new event.

The intake reads each client's `client_recent` row, adds the batch's events and writes the row
back (`atelier.events.ingest`). Decoded into Python objects and encoded again, that costs per
event the row holds, not per event received: with logs full (`FRESH_LOG` events per client) a
batch of 1,000 events took 125 ms, against 57 ms for clients with empty logs.

Feast stores each list as a protobuf `Value`, a sequence of self-delimited elements. When a
client's new events are all later than its stored ones, the merged log (`fresh.merge`: the last
`FRESH_LOG` events in time order) is the stored list without its first k elements, followed by
the new ones. So each list is cut after k elements (k is the number of events that leave the
log, usually 0 or 1: only those are stepped over) and the new elements' bytes are appended.
Only the times are read, because the row's other features come from them: `session_events`,
the row time, and whether `last_purchase_at` leaves the log.

A client whose events are not all later (a late event, a part applied again after a crash) or
whose last purchase may be leaving the log is rebuilt the exact way instead: its row decoded and
merged by `fresh.merge`. Both give the same bytes (tests/events/test_splice.py compares them on
random logs).

The splice is one compiled loop over the clients (`_kernel`, numba), reading and writing Arrow's
buffers. Written as numpy over whole columns it took ~6 ms per batch of 1,000 clients, a third
of the intake's time: some thirty array operations per field on arrays of a thousand, each paying
its call and its temporaries (benchmarks/freshness.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from feast.value_type import ValueType as FeastValueType

from atelier.features import redis_codec as rc
from atelier.features.schemas import FRESH_LOG, SESSION_GAP_S

STRINGS = ("event_ids", "event_products", "event_types")  # string lists, in the order of `fresh.LOG_FIELDS`
TIMES = "event_times"
_COLUMNS = {"event_ids": "event_id", "event_products": "product_id", "event_types": "event_type"}  # the journal's
_STRING_LIST, _INT64_LIST, _ELEMENT, _INT64, _TIMESTAMP = 0x62, 0x72, 0x0A, 0x20, 0x40  # protobuf tags of feast.types.Value
_SECONDS, _NANOS = 0x08, 0x10  # of google.protobuf.Timestamp
_INT64_MIN = -(2**63)
_WIDTH = 8  # bytes of a time's varint: microseconds from 1987 to 4253


@dataclass
class Stored:
    """The rows of a batch's clients as Redis holds them: for each client, the raw value of each of
    `fields` (None where absent) and the row time's."""

    clients: list[str]
    keys: pa.Array
    fields: list[str]
    values: list[list[bytes | None]]  # values[i][j]: client i, field j (the row time last)

    def column(self, name: str) -> list[bytes | None]:
        j = self.fields.index(name) if name != "_ts" else len(self.fields)
        return [v[j] for v in self.values]


@dataclass
class Spliced:
    """The new values of the spliced clients (`rows`, indices into `Stored.clients`), one array per
    field and the row times; and the clients to rebuild the exact way."""

    rows: np.ndarray
    values: dict[str, pa.Array]
    timestamps: pa.Array
    exact: np.ndarray


def splice(stored: Stored, events: pa.Table) -> Spliced:
    """Each client's row with `events` (the journal's columns) added, where the stored bytes allow."""
    n = len(stored.clients)
    row_of = {c: i for i, c in enumerate(stored.clients)}
    ev_row = np.fromiter((row_of[c] for c in events.column("client_id").to_pylist()), np.int64, events.num_rows)
    ev_time = events.column("event_timestamp").cast(pa.int64()).to_numpy()
    keys = pa.table({"row": ev_row, "time": ev_time, "id": events.column("event_id")})
    order = pc.sort_indices(keys, [("row", "ascending"), ("time", "ascending"), ("id", "ascending")]).to_numpy()  # as fresh.merge sorts
    bought = pc.equal(events.column("event_type"), "purchase").to_numpy(zero_copy_only=False)
    held = [a for name in (*STRINGS, TIMES, "last_purchase_at", "session_events", "_ts") for a in _buffers(pa.array(stored.column(name), pa.binary()))]
    new = [a for name in STRINGS for a in _buffers(events.column(_COLUMNS[name]))]
    ok, session, last_purchase, stamp, lists = _kernel(n, *held, order, ev_row[order], ev_time[order], bought[order], *new, FRESH_LOG, SESSION_GAP_S * 10**6)
    rows = np.nonzero(ok)[0]
    values = {name: _binary(*lists[k]) for k, name in enumerate((*STRINGS, TIMES))}
    lp = last_purchase[rows]
    values["last_purchase_at"] = rc.encode_values(pa.array(lp, pa.int64(), mask=lp == _INT64_MIN).cast(pa.timestamp("us", "UTC")), FeastValueType.UNIX_TIMESTAMP)
    values["session_events"] = rc.encode_values(pa.array(session[rows]), FeastValueType.INT64)
    ts = rc.encode_timestamps(pa.array(stamp[rows], pa.int64()).cast(pa.timestamp("us", "UTC")))
    return Spliced(rows, values, ts, np.nonzero(~ok)[0])


def warm() -> None:
    """Compile the splice (or load it from numba's cache) now, not in a client's first batch: the
    first compilation in a new checkout takes a few seconds, a load from the cache ~0.3 s."""
    times = pa.array([1_790_000_000_000_000], pa.int64()).cast(pa.timestamp("us", "UTC"))
    events = pa.table({"client_id": ["c"], "event_timestamp": times, "event_id": ["e"], "product_id": ["p"], "event_type": ["view"]})
    splice(Stored(["c"], pa.array(["c"]), [*STRINGS, TIMES, "last_purchase_at", "session_events"], [[None] * 7]), events)


def _buffers(arr: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """A binary or string array's bytes and its n+1 offsets into them (a null is empty)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    arr = rc.as_binary(arr)
    offsets = np.frombuffer(arr.buffers()[1], np.int32, len(arr) + 1, arr.offset * 4).astype(np.int64)
    data = arr.buffers()[2]
    buf = np.frombuffer(data, np.uint8) if data is not None and data.size else np.zeros(1, np.uint8)
    return buf, offsets


def _binary(data: np.ndarray, offsets: np.ndarray) -> pa.Array:
    return pa.BinaryArray.from_buffers(pa.binary(), len(offsets) - 1, [None, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(data)])


@numba.njit(cache=True, nogil=True)
def _varint(buf, pos, end):
    """(value, position after it) of the varint at `pos`; position -1 where it runs past `end`."""
    value = np.uint64(0)
    for k in range(10):
        if pos + k >= end:
            return np.uint64(0), -1
        b = buf[pos + k]
        value |= np.uint64(b & 0x7F) << np.uint64(7 * k)
        if b < 0x80:
            return value, pos + k + 1
    return np.uint64(0), -1


@numba.njit(cache=True, nogil=True)
def _put_varint(out, pos, value):
    v = np.uint64(value)
    while v >= np.uint64(0x80):
        out[pos] = np.uint8((v & np.uint64(0x7F)) | np.uint64(0x80))
        v >>= np.uint64(7)
        pos += 1
    out[pos] = np.uint8(v)
    return pos + 1


@numba.njit(cache=True, nogil=True)
def _varint_size(value):
    v = np.uint64(value)
    size = 1
    while v >= np.uint64(0x80):
        v >>= np.uint64(7)
        size += 1
    return size


@numba.njit(cache=True, nogil=True)
def _int64_value(buf, start, end, tag):
    """A stored `int64_val` (or, with its tag, `unix_timestamp_val`): (parsed, value), INT64_MIN where absent."""
    if end == start:
        return True, np.int64(_INT64_MIN)
    if buf[start] != tag:
        return False, np.int64(0)
    value, after = _varint(buf, start + 1, end)
    if after != end:
        return False, np.int64(0)
    return True, np.int64(value)


@numba.njit(cache=True, nogil=True)
def _row_time(buf, start, end):
    """A stored row time (`google.protobuf.Timestamp`, zero fields left out) in microseconds: (parsed, value)."""
    if end == start:
        return True, np.int64(_INT64_MIN)
    pos, seconds, nanos = start, np.int64(0), np.int64(0)
    if buf[pos] == _SECONDS:
        value, pos = _varint(buf, pos + 1, end)
        if pos < 0:
            return False, np.int64(0)
        seconds = np.int64(value)
    if pos < end and buf[pos] == _NANOS:
        value, pos = _varint(buf, pos + 1, end)
        if pos < 0:
            return False, np.int64(0)
        nanos = np.int64(value)
    if pos != end:
        return False, np.int64(0)
    return True, seconds * 1_000_000 + nanos // 1000


@numba.njit(cache=True, nogil=True)
def _times(buf, start, end):
    """A stored `event_times` list: (parsed, count, where its packed elements start). Each element is
    an 8-byte varint, so element j starts 8j bytes in; a list that is not is left to the exact way."""
    if end == start:
        return True, 0, end
    if buf[start] != _INT64_LIST:
        return False, 0, end
    size, inner = _varint(buf, start + 1, end)
    if inner < 0 or inner + np.int64(size) != end:
        return False, 0, end
    if size == 0:
        return True, 0, end
    if buf[inner] != _ELEMENT:
        return False, 0, end
    packed, first = _varint(buf, inner + 1, end)
    if first < 0 or first + np.int64(packed) != end or (end - first) % _WIDTH:
        return False, 0, end
    count = (end - first) // _WIDTH
    for j in range(count):
        for k in range(_WIDTH):
            if (buf[first + _WIDTH * j + k] < 0x80) != (k == _WIDTH - 1):
                return False, 0, end
    return True, count, first


@numba.njit(cache=True, nogil=True)
def _time_at(buf, first, j):
    return np.int64(_varint(buf, first + _WIDTH * j, first + _WIDTH * (j + 1))[0])


@numba.njit(cache=True, nogil=True)
def _string_tail(buf, start, end, drop):
    """Where a stored string list's elements after its first `drop` start (-1: not a string list,
    or fewer elements)."""
    if end == start:
        return end if drop == 0 else -1
    if buf[start] != _STRING_LIST:
        return -1
    size, pos = _varint(buf, start + 1, end)
    if pos < 0 or pos + np.int64(size) != end:
        return -1
    for _ in range(drop):
        if pos >= end or buf[pos] != _ELEMENT:
            return -1
        length, after = _varint(buf, pos + 1, end)
        if after < 0:
            return -1
        pos = min(after + np.int64(length), end)
    return pos


@numba.njit(cache=True, nogil=True)
def _kernel(n, ids, id_off, products, product_off, types, type_off, times, time_off, lp, lp_off, sessions, session_off, ts, ts_off,
            order, ev_row, ev_time, ev_bought, new_ids, new_id_off, new_products, new_product_off, new_types, new_type_off, fresh_log, gap_us):
    """Every client's spliced row: (ok, session_events, last purchase, row time, the four lists'
    (bytes, offsets) for the ok clients in order). Events sorted by client, time and id; `order`
    maps them to the rows of the `new_*` strings; a client that is not ok goes the exact way."""
    ok = np.zeros(n, np.bool_)
    session = np.zeros(n, np.int64)
    last_purchase = np.full(n, _INT64_MIN, np.int64)
    stamp = np.zeros(n, np.int64)
    drop_old = np.zeros(n, np.int64)
    first_new = np.zeros(n + 1, np.int64)
    for e in range(len(ev_row)):
        first_new[ev_row[e] + 1] += 1
    for i in range(n):
        first_new[i + 1] += first_new[i]
    cuts = np.zeros((3, n), np.int64)
    packed_at = np.zeros(n, np.int64)

    for i in range(n):
        a, b = first_new[i], first_new[i + 1]
        n_new = b - a
        if n_new == 0:
            continue
        parsed, n_old, first = _times(times, time_off[i], time_off[i + 1])
        if not parsed:
            continue
        last_old = _time_at(times, first, n_old - 1) if n_old > 0 else np.int64(_INT64_MIN)
        if ev_time[a] <= last_old:  # not every new event later than every stored one
            continue
        d_old = min(max(n_old + n_new - fresh_log, 0), n_old)
        d_new = max(n_new - fresh_log, 0)
        kept_old = n_old - d_old
        first_kept = _time_at(times, first, d_old) if kept_old > 0 else ev_time[a + d_new]

        # session_events: the new events' last session, joined to the stored row's (its own
        # session_events, cut to the events that stay) when no gap separates them
        parsed, held_session = _int64_value(sessions, session_off[i], session_off[i + 1], _INT64)
        if not parsed or (n_old > 0 and held_session <= 0):
            continue
        run, whole = 1, True
        for e in range(a + d_new + 1, b):
            if ev_time[e] - ev_time[e - 1] > gap_us:
                run, whole = 0, False
            run += 1
        if whole and kept_old > 0 and ev_time[a + d_new] - last_old <= gap_us:
            run += min(held_session, kept_old)

        # last_purchase_at: a new purchase, or the stored one while its event stays in the log
        new_purchase = np.int64(_INT64_MIN)
        for e in range(a + d_new, b):
            if ev_bought[e]:
                new_purchase = max(new_purchase, ev_time[e])
        parsed, held = _int64_value(lp, lp_off[i], lp_off[i + 1], _TIMESTAMP)
        if not parsed:
            continue
        some = held != _INT64_MIN
        held_us = held * 1_000_000 if some else np.int64(0)  # whole seconds, as Feast stores times
        stays = some and (d_old == 0 or held_us >= first_kept)
        leaves = some and d_old > 0 and held_us + 1_000_000 <= first_kept
        if not (new_purchase != _INT64_MIN or not some or stays or leaves):
            continue  # not known from the bytes
        parsed, previous = _row_time(ts, ts_off[i], ts_off[i + 1])
        if not parsed:
            continue
        c0 = _string_tail(ids, id_off[i], id_off[i + 1], d_old)
        c1 = _string_tail(products, product_off[i], product_off[i + 1], d_old)
        c2 = _string_tail(types, type_off[i], type_off[i + 1], d_old)
        if c0 < 0 or c1 < 0 or c2 < 0:  # a list shorter than the times, or not a string list
            continue
        ok[i] = True
        drop_old[i] = d_old
        cuts[0, i], cuts[1, i], cuts[2, i] = c0, c1, c2
        packed_at[i] = first + _WIDTH * d_old if n_old > 0 else time_off[i + 1]
        session[i] = run
        last_purchase[i] = new_purchase if new_purchase != _INT64_MIN else (held_us if stays else np.int64(_INT64_MIN))
        last = ev_time[b - 1]  # sorted: the row's last event
        stamp[i] = last if last > previous else previous + 1

    m = int(ok.sum())
    lists = []
    stored = ((ids, id_off), (products, product_off), (types, type_off))
    news = ((new_ids, new_id_off), (new_products, new_product_off), (new_types, new_type_off))
    for f in range(3):
        buf, off = stored[f]
        nbuf, noff = news[f]
        out = np.empty(len(buf) + len(nbuf) + 11 * (len(ev_row) + 2 * n) + 1, np.uint8)
        out_off = np.zeros(m + 1, np.int64)
        pos, r = 0, 0
        for i in range(n):
            if not ok[i]:
                continue
            a, b = first_new[i], first_new[i + 1]
            a += max(b - a - fresh_log, 0)
            body = off[i + 1] - cuts[f, i]
            for e in range(a, b):
                length = noff[order[e] + 1] - noff[order[e]]
                body += 1 + _varint_size(length) + length
            out[pos] = _STRING_LIST
            pos = _put_varint(out, pos + 1, body)
            tail = off[i + 1] - cuts[f, i]
            out[pos:pos + tail] = buf[cuts[f, i]:off[i + 1]]
            pos += tail
            for e in range(a, b):
                s, t = noff[order[e]], noff[order[e] + 1]
                out[pos] = _ELEMENT
                pos = _put_varint(out, pos + 1, t - s)
                out[pos:pos + t - s] = nbuf[s:t]
                pos += t - s
            r += 1
            out_off[r] = pos
        lists.append((out[:pos], out_off))

    out = np.empty(len(times) + 10 * len(ev_row) + 22 * n + 1, np.uint8)
    out_off = np.zeros(m + 1, np.int64)
    pos, r = 0, 0
    for i in range(n):
        if not ok[i]:
            continue
        a, b = first_new[i], first_new[i + 1]
        a += max(b - a - fresh_log, 0)
        packed = time_off[i + 1] - packed_at[i]
        for e in range(a, b):
            packed += _varint_size(ev_time[e])
        out[pos] = _INT64_LIST
        pos = _put_varint(out, pos + 1, 1 + _varint_size(packed) + packed)
        out[pos] = _ELEMENT
        pos = _put_varint(out, pos + 1, packed)
        tail = time_off[i + 1] - packed_at[i]
        out[pos:pos + tail] = times[packed_at[i]:time_off[i + 1]]
        pos += tail
        for e in range(a, b):
            pos = _put_varint(out, pos, ev_time[e])
        r += 1
        out_off[r] = pos
    lists.append((out[:pos], out_off))
    return ok, session, last_purchase, stamp, lists
