"""The real-time view's rows, and how the query side lays them over the batch features.

A client's fresh row (view `client_recent`, schema `schemas.CLIENT_RECENT`) is its last
`FRESH_LOG` events received in real time: ids, products, types and times, oldest first.
`merge` is a set union keyed by event id, kept in time order and cut to the last `FRESH_LOG`:
the same events applied twice, or two batches applied in either order, give the same row. That
is what makes a resent batch, or a batch applied again after a crash, harmless online.

`overlay` is how serving reads them. `client_activity`'s lists and counts are computed by the
batch pipeline from every event up to its row's time. The fresh events after that time are
added exactly as the pipeline adds events: appended to `recent_products` (and, for purchases,
to `purchased_products`), keeping the last `RECENT_HISTORY` (`PURCHASE_HISTORY`); the client
windows' counts moved up; `last_purchase_at` moved on. Once the next batch features hold those
events their row's time passes them, so they are never counted twice. An event older than the
batch row (sent days late) reaches the query side with the next batch features.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pyarrow as pa

from atelier.features import schemas
from atelier.features.schemas import CLIENT_WINDOWS, FRESH_LOG, PURCHASE_HISTORY, RECENT_HISTORY, SESSION_GAP_S

VIEW = "client_recent"
PUSH_SOURCE = "client_events_push"
LOG_FIELDS = ("event_ids", "event_products", "event_types", "event_times")
REFS = [f"{VIEW}:{name}" for name in LOG_FIELDS]
ENGAGED = ("purchase", "wishlist", "view")  # what the batch pipeline's client features count (returns are not)
_COUNTED = {name: event for name, (event, value, _days) in CLIENT_WINDOWS.items() if value == "count"}


@dataclass
class Log:
    """One client's last events, oldest first (times in microseconds since the epoch)."""

    ids: list[str] = field(default_factory=list)
    products: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    times: list[int] = field(default_factory=list)

    @staticmethod
    def of(values: dict) -> Log:
        """From a row's columns as the online store returns them (None where the client has none)."""
        return Log(*[list(values.get(name) or []) for name in LOG_FIELDS])

    def events(self) -> list[tuple[int, str, str, str]]:
        return list(zip(self.times, self.ids, self.products, self.types))


def merge(log: Log, events: Iterable[tuple[int, str, str, str]]) -> Log:
    """`log` with `events` (time_us, event_id, product_id, event_type) added, each id once."""
    by_id = {e[1]: e for e in log.events()}
    for e in events:
        by_id.setdefault(e[1], e)
    kept = sorted(by_id.values())[-FRESH_LOG:]
    return Log([e[1] for e in kept], [e[2] for e in kept], [e[3] for e in kept], [e[0] for e in kept])


def by_client(events: pa.Table) -> dict[str, list[tuple[int, str, str, str]]]:
    """A table of events (the journal's columns) as each client's (time_us, event_id, product_id,
    event_type) tuples, what `merge` takes."""
    times = events.column("event_timestamp").cast(pa.int64()).to_pylist()
    out: dict[str, list] = {}
    for t, e, c, p, k in zip(times, *(events.column(n).to_pylist() for n in ("event_id", "client_id", "product_id", "event_type"))):
        out.setdefault(c, []).append((t, e, p, k))
    return out


def row(client_id: str, log: Log, previous_us: int | None = None) -> dict:
    """The view's row for `log`. Its time is the last event's, or just after the row it replaces
    when that one is as new (the online store keeps a row only if it is newer than the stored one)."""
    last = log.times[-1]
    stamp = last if previous_us is None or last > previous_us else previous_us + 1
    purchases = [t for t, kind in zip(log.times, log.types) if kind == "purchase"]
    session = 1
    for earlier, later in zip(reversed(log.times[:-1]), reversed(log.times)):
        if later - earlier > SESSION_GAP_S * 10**6:
            break
        session += 1
    return {"client_id": client_id, "event_timestamp": stamp, "event_ids": log.ids, "event_products": log.products,
            "event_types": log.types, "event_times": log.times, "last_purchase_at": max(purchases) if purchases else None,
            "session_events": session}


def table(rows: list[dict]) -> pa.Table:
    """Rows as a table of the view's schema (times as microseconds become timestamps)."""
    cols = {f.name: [r[f.name] for r in rows] for f in schemas.CLIENT_RECENT}
    return pa.table({f.name: pa.array(cols[f.name], f.type if not pa.types.is_timestamp(f.type) else pa.int64()).cast(f.type)
                     for f in schemas.CLIENT_RECENT})


def micros(value) -> int | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return int(value.replace(tzinfo=value.tzinfo or timezone.utc).timestamp() * 10**6)
    return int(value)


def overlay(cols: dict[str, list], found: list[bool], fresh: dict[str, list], batch_time: list) -> list[bool]:
    """Add each client's fresh events newer than its batch row (`batch_time`) to `cols`, in place.

    `cols` holds client_activity's features (any subset) for a batch of clients, `fresh` their
    `client_recent` log columns. Returns `found`, now also true for a client known only by its
    fresh events (on the region's roster, bought today, no batch row yet).
    """
    found = list(found)
    for j in range(len(found)):
        log = Log.of({name: fresh[name][j] for name in LOG_FIELDS if name in fresh})
        cut = micros(batch_time[j])
        newer = [e for e in log.events() if cut is None or e[0] > cut]
        if not newer:
            continue
        found[j] = True
        engaged = [e for e in newer if e[3] in ENGAGED]
        bought = [e for e in engaged if e[3] == "purchase"]
        if "recent_products" in cols:
            cols["recent_products"][j] = (list(cols["recent_products"][j] or []) + [e[2] for e in engaged])[-RECENT_HISTORY:]
        if "purchased_products" in cols and bought:
            cols["purchased_products"][j] = (list(cols["purchased_products"][j] or []) + [e[2] for e in bought])[-PURCHASE_HISTORY:]
        if "last_purchase_at" in cols and bought:
            last = datetime.fromtimestamp(bought[-1][0] / 1e6, tz=timezone.utc)
            held = cols["last_purchase_at"][j]
            cols["last_purchase_at"][j] = last if held is None or micros(held) < bought[-1][0] else held
        for name, event in _COUNTED.items():
            if name in cols:
                cols[name][j] = (cols[name][j] or 0) + sum(1 for e in engaged if e[3] == event)
    return found
