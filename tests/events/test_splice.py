"""The spliced fresh rows are byte for byte what the exact merge writes (no Redis needed: the bytes
are Feast's Redis values, built by atelier.features.redis_codec, itself checked against Feast)."""

import random
import uuid

import pyarrow as pa
import pytest
from feast.value_type import ValueType as FeastValueType

from atelier.events import fresh
from atelier.events.splice import Splicer, Stored, splice
from atelier.features import redis_codec as rc
from atelier.features import resp
from atelier.features import schemas
from atelier.features.online import _timestamp
from atelier.features.schemas import FRESH_LOG, SESSION_GAP_S

FIELDS = [f.name for f in schemas.CLIENT_RECENT if f.name not in ("client_id", "event_timestamp")]
TYPES = {"event_ids": FeastValueType.STRING_LIST, "event_products": FeastValueType.STRING_LIST, "event_types": FeastValueType.STRING_LIST,
         "event_times": FeastValueType.INT64_LIST, "last_purchase_at": FeastValueType.UNIX_TIMESTAMP, "session_events": FeastValueType.INT64}
KINDS = ("view", "view", "view", "purchase", "wishlist", "return")


def _encoded(rows: list[dict]) -> tuple[dict[str, list[bytes]], list[bytes]]:
    """Each field's Redis value per row, and the row time's, as the intake's exact path writes them."""
    t = fresh.table(rows)
    return ({name: rc.encode_values(t.column(name), TYPES[name]).to_pylist() for name in FIELDS},
            rc.encode_timestamps(t.column("event_timestamp")).to_pylist())


def _events(rng, n, start_us, spread_us, product_ids=None):
    return [(start_us + rng.randrange(spread_us), uuid.UUID(int=rng.getrandbits(128)).hex[: rng.choice((8, 32))],
             rng.choice(product_ids or ["P1", "P22", "P0000333", "é-ünicode-" + "x" * 140]), rng.choice(KINDS)) for _ in range(n)]


def _journal(clients_events: dict[str, list]) -> pa.Table:
    rows = [(c, *e) for c, evs in clients_events.items() for e in evs]
    random.Random(0).shuffle(rows)
    return pa.table({"client_id": [r[0] for r in rows], "event_timestamp": pa.array([r[1] for r in rows], pa.int64()).cast(pa.timestamp("us", "UTC")),
                     "event_id": [r[2] for r in rows], "product_id": [r[3] for r in rows], "event_type": [r[4] for r in rows]})


def _batch(seed: int):
    """300 clients' random stored logs and new events: (the rows as Redis holds them, the new events
    per client, the stored logs, each client's stored values with the row time last)."""
    rng = random.Random(seed)
    now = 1_790_000_000_000_000
    logs, new, previous = {}, {}, {}
    for i in range(300):
        c = f"C{i}"
        held = rng.choice((0, 1, 3, FRESH_LOG - 1, FRESH_LOG, FRESH_LOG))
        # some logs spread over hours (sessions end), some within a minute; some new events late
        spread = rng.choice((60 * 10**6, 6 * SESSION_GAP_S * 10**6))
        if held:
            evs = _events(rng, held, now - spread, spread)
            if rng.random() < 0.3:  # one purchase, the oldest event: it leaves the log first
                evs = sorted(evs)
                evs = [evs[0][:3] + ("purchase",)] + [e[:3] + (rng.choice(("view", "wishlist")),) for e in evs[1:]]
            logs[c] = fresh.merge(fresh.Log(), evs)
            previous[c] = logs[c].times[-1] + rng.choice((0, 0, 5))  # a row time may sit just after its last event
        late = rng.random() < 0.15
        new[c] = _events(rng, rng.choice((1, 1, 1, 2, 5, FRESH_LOG + 3)), now - (spread if late else 0), rng.choice((10**6, 3 * SESSION_GAP_S * 10**6)))
    clients = list(new)
    stored_rows = [fresh.row(c, logs[c], previous[c] - 1 if previous[c] != logs[c].times[-1] else None) for c in clients if c in logs]
    enc, ts = _encoded(stored_rows) if stored_rows else ({}, [])
    at = {r["client_id"]: k for k, r in enumerate(stored_rows)}
    values = [[enc[f][at[c]] if c in at else None for f in FIELDS] + [ts[at[c]] if c in at else None] for c in clients]
    return Stored(clients, pa.array(clients), FIELDS, resp.Cells.of_rows(values, len(FIELDS) + 1)), new, logs, values


@pytest.mark.parametrize("seed", range(6))
def test_spliced_rows_are_the_exact_merges_bytes(seed):
    stored, new, logs, values = _batch(seed)
    clients, at = stored.clients, {c: i for i, c in enumerate(stored.clients) if values[i][-1] is not None}
    got = splice(stored, _journal(new))

    expected_rows = [fresh.row(c, fresh.merge(logs.get(c, fresh.Log()), new[c]), fresh.micros(_timestamp(values[i][-1])) if c in at else None)
                     for i, c in enumerate(clients)]
    want, want_ts = _encoded(expected_rows)
    assert len(got.rows) + len(got.exact) == len(clients) and not set(got.rows) & set(got.exact)
    assert len(got.rows) > 0.6 * len(clients)  # the common case is spliced
    for name in FIELDS:
        assert got.column(name) == [want[name][i] for i in got.rows], name
    assert got.column("_ts") == [want_ts[i] for i in got.rows]
    # what is left to the exact way is what the bytes cannot answer: a new event not later than the log
    for i in got.exact:
        c = clients[i]
        log = logs.get(c)
        late = log is not None and log.times and min(e[0] for e in new[c]) <= log.times[-1]
        purchase_leaving = log is not None and any(k == "purchase" for k in log.types)
        assert late or purchase_leaving, c


def test_a_row_that_is_not_a_list_is_left_to_the_exact_way():
    now = 1_790_000_000_000_000
    log = fresh.merge(fresh.Log(), [(now - 5, "a", "P1", "view")])
    enc, ts = _encoded([fresh.row("C0", log), fresh.row("C1", log)])
    values = [[enc[f][k] for f in FIELDS] + [ts[k]] for k in range(2)]
    values[1][FIELDS.index("event_products")] = b"\x12\x03abc"  # a string, not a list
    got = splice(Stored(["C0", "C1"], pa.array(["C0", "C1"]), FIELDS, resp.Cells.of_rows(values, len(FIELDS) + 1)), _journal({"C0": [(now, "b", "P2", "view")], "C1": [(now, "c", "P2", "view")]}))
    assert list(got.rows) == [0] and list(got.exact) == [1]
    assert got.column("event_ids") == [_encoded([fresh.row("C0", fresh.merge(log, [(now, "b", "P2", "view")]))])[0]["event_ids"][0]]


@pytest.mark.parametrize("size", [1, 7, 128])
def test_clients_spliced_a_range_at_a_time_give_the_whole_batchs_bytes(size):
    """The intake sends a batch's rows in pieces (`Splicer.rows` over ranges of clients): the pieces
    together are the batch spliced at once, the same rows, the same bytes, the same left to the exact way."""
    stored, new, _, _ = _batch(size)
    events = _journal(new)
    whole, splicer = splice(stored, events), Splicer(stored, events)
    rows, exact, columns = [], [], {name: [] for name in [*FIELDS, "_ts"]}
    for lo in range(0, len(stored.clients), size):
        piece = splicer.rows(lo, min(lo + size, len(stored.clients)))
        rows += [lo + int(i) for i in piece.rows]
        exact += [lo + int(i) for i in piece.exact]
        for name in columns:
            columns[name] += piece.column(name)
    assert rows == whole.rows.tolist() and exact == whole.exact.tolist() and exact
    assert columns == {name: whole.column(name) for name in columns}
