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

from atelier.features import resp
from atelier.features.schemas import FRESH_LOG, SESSION_GAP_S

STRINGS = ("event_ids", "event_products", "event_types")  # string lists, in the order of `fresh.LOG_FIELDS`
TIMES = "event_times"
_COLUMNS = {"event_ids": "event_id", "event_products": "product_id", "event_types": "event_type"}  # the journal's
_STRING_LIST, _INT64_LIST, _ELEMENT, _INT64, _TIMESTAMP = 0x62, 0x72, 0x0A, 0x20, 0x40  # protobuf tags of feast.types.Value
_SECONDS, _NANOS = 0x08, 0x10  # of google.protobuf.Timestamp
_FIELDS = (*STRINGS, TIMES, "last_purchase_at", "session_events")  # the view's features, each written by the kernel
_INT64_MIN = -(2**63)
_WIDTH = 8  # bytes of a time's varint: microseconds from 1987 to 4253


@dataclass
class Stored:
    """The rows of a batch's clients as Redis holds them: cell (i, j) is client i's raw value of
    `fields[j]` (empty where absent), the row time's last."""

    clients: list[str]
    keys: pa.Array
    fields: list[str]
    cells: resp.Cells

    def value(self, i: int, name: str) -> bytes | None:
        return self.cells.value(i, self.fields.index(name) if name != "_ts" else len(self.fields))


@dataclass
class Spliced:
    """The new rows of the spliced clients (`rows`, indices into `Stored.clients`): row k of
    `cells` holds client rows[k]'s values, in the order of `Stored.fields`, then the row time's;
    and the clients to rebuild the exact way."""

    rows: np.ndarray
    cells: resp.Cells
    fields: list[str]
    exact: np.ndarray

    def column(self, name: str) -> list[bytes]:
        """One field's new values (`_ts`: the row times), a row per spliced client."""
        j = self.fields.index(name) if name != "_ts" else len(self.fields)
        data = self.cells.data.tobytes()
        return [data[s:e] for s, e in zip(self.cells.starts[:, j].tolist(), self.cells.ends[:, j].tolist())]


def splice(stored: Stored, events: pa.Table) -> Spliced:
    """Each client's row with `events` (the journal's columns) added, where the stored bytes allow."""
    return Splicer(stored, events).rows(0, len(stored.clients))


class Splicer:
    """`splice`, a range of the clients at a time: the events are sorted once, then each range's
    rows are built (`rows`) while Redis writes the rows of the ranges before (atelier.events.ingest)."""

    def __init__(self, stored: Stored, events: pa.Table):
        self.slots = np.array([stored.fields.index(name) for name in _FIELDS], np.int64)
        if len(stored.fields) != len(_FIELDS):
            raise ValueError(f"the splice writes {_FIELDS}, not {stored.fields}")
        self.stored = stored
        clients = events.column("client_id").combine_chunks().dictionary_encode()  # each client once, its rows
        row_of = pc.index_in(clients.dictionary, value_set=pa.array(stored.clients, pa.string())).to_numpy(zero_copy_only=False)
        ev_row = row_of[clients.indices.to_numpy()].astype(np.int64)
        ev_time = events.column("event_timestamp").cast(pa.int64()).to_numpy()
        keys = pa.table({"row": ev_row, "time": ev_time, "id": events.column("event_id")})
        self.order = pc.sort_indices(keys, [("row", "ascending"), ("time", "ascending"), ("id", "ascending")]).to_numpy().astype(np.int64)  # as fresh.merge sorts
        self.ev_row, self.ev_time = ev_row[self.order], ev_time[self.order]
        self.bought = pc.equal(events.column("event_type"), "purchase").to_numpy(zero_copy_only=False)[self.order]
        self.new = [a for name in STRINGS for a in resp.buffers(events.column(_COLUMNS[name]))]

    def rows(self, lo: int, hi: int) -> Spliced:
        """The spliced rows of clients lo..hi-1 (`Spliced.rows` and `exact` count from 0, not `lo`)."""
        a, b = np.searchsorted(self.ev_row, [lo, hi])
        cells = self.stored.cells
        ok, data, starts, ends = _kernel(hi - lo, cells.data, cells.starts[lo:hi], cells.ends[lo:hi], self.slots, self.order[a:b], self.ev_row[a:b] - lo,
                                         self.ev_time[a:b], self.bought[a:b], *self.new, FRESH_LOG, SESSION_GAP_S * 10**6)
        return Spliced(np.nonzero(ok)[0], resp.Cells(data, starts, ends), list(self.stored.fields), np.nonzero(~ok)[0])


def warm() -> None:
    """Compile the intake's compiled loops (the splice, the RESP scan and the HSET pipeline), or
    load them from numba's cache, now rather than in a client's first batch: the first compilation
    in a new checkout takes several seconds, a load from the cache well under one."""
    times = pa.array([1_790_000_000_000_000], pa.int64()).cast(pa.timestamp("us", "UTC"))
    events = pa.table({"client_id": ["c"], "event_timestamp": times, "event_id": ["e"], "product_id": ["p"], "event_type": ["view"]})
    splice(Stored(["c"], pa.array(["c"]), list(_FIELDS), resp.Cells.of_rows([[None] * (len(_FIELDS) + 1)], len(_FIELDS) + 1)), events)
    resp.warm()


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
def _put_string_list(out, pos, buf, cut, end, first, last, order, nbuf, noff):
    """A string list: the stored elements from `cut` to `end`, then the new events' strings."""
    body = end - cut
    for e in range(first, last):
        length = noff[order[e] + 1] - noff[order[e]]
        body += 1 + _varint_size(length) + length
    out[pos] = _STRING_LIST
    pos = _put_varint(out, pos + 1, body)
    pos = resp.put_bytes(out, pos, buf, cut, end)
    for e in range(first, last):
        s, t = noff[order[e]], noff[order[e] + 1]
        out[pos] = _ELEMENT
        pos = resp.put_bytes(out, _put_varint(out, pos + 1, t - s), nbuf, s, t)
    return pos


@numba.njit(cache=True, nogil=True)
def _put_times(out, pos, buf, cut, end, first, last, ev_time):
    """The times list: the stored packed elements from `cut` to `end`, then the new events' times."""
    packed = end - cut
    for e in range(first, last):
        packed += _varint_size(ev_time[e])
    out[pos] = _INT64_LIST
    pos = _put_varint(out, pos + 1, 1 + _varint_size(packed) + packed)
    out[pos] = _ELEMENT
    pos = _put_varint(out, pos + 1, packed)
    pos = resp.put_bytes(out, pos, buf, cut, end)
    for e in range(first, last):
        pos = _put_varint(out, pos, ev_time[e])
    return pos


@numba.njit(cache=True, nogil=True)
def _kernel(n, held, held_starts, held_ends, slots, order, ev_row, ev_time, ev_bought, new_ids, new_id_off, new_products, new_product_off, new_types, new_type_off,
            fresh_log, gap_us):
    """Every client's spliced row: (ok, then the cells of the ok clients' rows: their bytes, and
    each value's start and end, in the order of the stored fields then the row time). Client i's
    stored field j is `held[held_starts[i, j]:held_ends[i, j]]` (the row time's last);
    `slots` are the columns of ids, products, types, times, last purchase and session. Events
    sorted by client, time and id; `order` maps them to the rows of the `new_*` strings; a client
    that is not ok goes the exact way."""
    w = len(slots) + 1
    ok = np.zeros(n, np.bool_)
    session = np.zeros(n, np.int64)
    last_purchase = np.full(n, _INT64_MIN, np.int64)
    stamp = np.zeros(n, np.int64)
    first_new = np.zeros(n + 1, np.int64)
    for e in range(len(ev_row)):
        first_new[ev_row[e] + 1] += 1
    for i in range(n):
        first_new[i + 1] += first_new[i]
    cuts = np.zeros((n, 4), np.int64)  # where each list's kept elements start: ids, products, types, times

    for i in range(n):
        a, b = first_new[i], first_new[i + 1]
        n_new = b - a
        if n_new == 0:
            continue
        ts, te = held_starts[i, slots[3]], held_ends[i, slots[3]]
        parsed, n_old, first = _times(held, ts, te)
        if not parsed:
            continue
        last_old = _time_at(held, first, n_old - 1) if n_old > 0 else np.int64(_INT64_MIN)
        if ev_time[a] <= last_old:  # not every new event later than every stored one
            continue
        d_old = min(max(n_old + n_new - fresh_log, 0), n_old)
        d_new = max(n_new - fresh_log, 0)
        kept_old = n_old - d_old
        first_kept = _time_at(held, first, d_old) if kept_old > 0 else ev_time[a + d_new]

        # session_events: the new events' last session, joined to the stored row's (its own
        # session_events, cut to the events that stay) when no gap separates them
        parsed, held_session = _int64_value(held, held_starts[i, slots[5]], held_ends[i, slots[5]], _INT64)
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
        parsed, bought_s = _int64_value(held, held_starts[i, slots[4]], held_ends[i, slots[4]], _TIMESTAMP)
        if not parsed:
            continue
        some = bought_s != _INT64_MIN
        held_us = bought_s * 1_000_000 if some else np.int64(0)  # whole seconds, as Feast stores times
        stays = some and (d_old == 0 or held_us >= first_kept)
        leaves = some and d_old > 0 and held_us + 1_000_000 <= first_kept
        if not (new_purchase != _INT64_MIN or not some or stays or leaves):
            continue  # not known from the bytes
        parsed, previous = _row_time(held, held_starts[i, w - 1], held_ends[i, w - 1])
        if not parsed:
            continue
        for f in range(3):
            cuts[i, f] = _string_tail(held, held_starts[i, slots[f]], held_ends[i, slots[f]], d_old)
        if cuts[i, 0] < 0 or cuts[i, 1] < 0 or cuts[i, 2] < 0:  # a list shorter than the times, or not a string list
            continue
        ok[i] = True
        cuts[i, 3] = first + _WIDTH * d_old if n_old > 0 else te
        session[i] = run
        last_purchase[i] = new_purchase if new_purchase != _INT64_MIN else (held_us if stays else np.int64(_INT64_MIN))
        last = ev_time[b - 1]  # sorted: the row's last event
        stamp[i] = last if last > previous else previous + 1

    m = int(ok.sum())
    held_bytes = 0
    for i in range(n):
        for j in range(w):
            held_bytes += held_ends[i, j] - held_starts[i, j]
    out = np.empty(held_bytes + len(new_ids) + len(new_products) + len(new_types) + 40 * len(ev_row) + 64 * n + 1, np.uint8)
    starts = np.zeros((m, w), np.int64)
    ends = np.zeros((m, w), np.int64)
    news = ((new_ids, new_id_off), (new_products, new_product_off), (new_types, new_type_off))
    pos, r = 0, 0
    for i in range(n):
        if not ok[i]:
            continue
        a, b = first_new[i], first_new[i + 1]
        a += max(b - a - fresh_log, 0)  # the new events kept
        for f in range(3):
            starts[r, slots[f]] = pos
            pos = _put_string_list(out, pos, held, cuts[i, f], held_ends[i, slots[f]], a, b, order, news[f][0], news[f][1])
            ends[r, slots[f]] = pos
        starts[r, slots[3]] = pos
        pos = _put_times(out, pos, held, cuts[i, 3], held_ends[i, slots[3]], a, b, ev_time)
        ends[r, slots[3]] = pos
        # unix_timestamp_val in whole seconds (truncated, as Arrow casts); none is INT64_MIN, as stock Feast writes it
        starts[r, slots[4]] = pos
        out[pos] = _TIMESTAMP
        lp = last_purchase[i]
        pos = _put_varint(out, pos + 1, lp if lp == _INT64_MIN else (lp // 1_000_000 if lp >= 0 else -((-lp) // 1_000_000)))
        ends[r, slots[4]] = pos
        starts[r, slots[5]] = pos
        out[pos] = _INT64
        pos = _put_varint(out, pos + 1, session[i])
        ends[r, slots[5]] = pos
        # the row time: google.protobuf.Timestamp, seconds and nanos, zero fields left out
        starts[r, w - 1] = pos
        seconds, nanos = stamp[i] // 1_000_000, (stamp[i] % 1_000_000) * 1000
        if seconds != 0:
            out[pos] = _SECONDS
            pos = _put_varint(out, pos + 1, seconds)
        if nanos != 0:
            out[pos] = _NANOS
            pos = _put_varint(out, pos + 1, nanos)
        ends[r, w - 1] = pos
        r += 1
    return ok, out[:pos], starts, ends
