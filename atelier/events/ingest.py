"""Client events in, into both sides of the region's feature store: the order of writes, and recovery.

For one batch:

1. check it (atelier.events.batch): a bad row rejects the batch (400), a client of another
   region too (403); nothing is written. Then it queues: the batches that arrive while one is
   written go together, as one, in the next write (atelier.events.group), and each is answered
   once that write is done. Then, under the region's writer lock:
2. apply what an earlier batch left half-done (see below);
3. leave out the events the journal holds already (a resent batch: the same event ids and
   times, `journal.ledger_keys`): they are counted as duplicates, never twice. The ledger looks
   them up on a thread of its own while 4 starts;
4. ask the online store for the clients' fresh rows (again, for the events left, after a
   resend). An unreachable store stops the batch here (503 with Retry-After) with nothing written;
5. while Redis answers, write the new events as one encrypted journal part, fsynced (the
   durable record), entered in the ledger as not applied before it is written;
6. merge them into the fresh rows and send those to the online store (the push view
   `client_recent`, in Feast's layout, Feast's "newer row wins" rule kept). On Redis the rows
   are read and written as bytes, the new events spliced in (atelier.events.splice), so the
   cost follows the events received, not the events each row holds; each piece of `SEND_ROWS`
   clients' rows is sent as soon as it is spliced, so Redis writes it while the next is built;
7. while Redis writes, index the part's events in the ledger;
8. once Redis has confirmed the rows, mark the part applied; only then is the batch
   acknowledged (202).

Redis runs in a process of its own: steps 5 and 7 overlap its work instead of waiting for it
(benchmarks/freshness.py). A crash, or a store lost, after 5 leaves a part journaled and perhaps
not applied online, its ids perhaps not in the ledger. Step 2 of the next batch (one indexed
query, whatever the journal's size), and the service's start, index such parts and apply them
again. Applying is idempotent (the fresh row is a set of events
keyed by id), so a part applied twice counts nothing twice. After a restart or a resend, every
event is then in both stores; an event that never reached step 5 is in neither, and was never
acknowledged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import redis
from feast.permissions.action import AuthzedAction

from atelier import crash
from atelier.context import RegionContext
from atelier.errors import AtelierError
from atelier.events import fresh, splice
from atelier.events.batch import MAX_BATCH, Event, check, to_table
from atelier.events.group import GroupCommit
from atelier.events.journal import Journal, ledger_keys, ledger_text
from atelier.protect import access
from atelier.protect.parquet import MARKER, read_dataset
from atelier.protect.residency import roster_index

log = logging.getLogger(__name__)
RETRY_AFTER_S = 5
GROUP_EVENTS = MAX_BATCH  # events written together at most: small batches are grouped, a full one goes alone
SEND_ROWS = 128  # clients' rows per piece of the HSET pipeline (see _start_write)
UNREACHABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)  # the store, not the batch


class StoreUnavailable(AtelierError):
    """The online store cannot be reached: nothing of the batch is acknowledged."""

    retry_after = RETRY_AFTER_S


@dataclass
class Receipt:
    accepted: int
    duplicates: int
    seconds: float = 0.0


class Ingestor:
    """A region's event intake (one per service worker, or per replay)."""

    def __init__(self, ctx: RegionContext, group_events: int = GROUP_EVENTS):
        """`group_events`: the most events written together (1: each batch alone)."""
        from atelier.features.online import OnlineFeatures

        self.ctx = ctx
        self.journal = Journal(ctx)
        store = ctx.store
        try:
            self.view = store.get_feature_view(fresh.VIEW)
        except Exception:
            raise AtelierError(f"region {ctx.region!r} has no {fresh.VIEW} view", fix=f"run `atelier features apply -r {ctx.region}`") from None
        access.authorize(store, [self.view], AuthzedAction.WRITE_ONLINE, ctx.user)  # the policy: feature_repo/permissions.py
        access.authorize_online_read(store, [self.view], ctx.user)  # the rows are read before they are written
        self._products: tuple[int, pa.Array, frozenset[str]] | None = None
        self._redis = _redis_writer(store, self.view)
        if self._redis is not None:
            splice.warm()
        # Other online stores: read through atelier's reader, written by Feast's provider.
        self.reader = OnlineFeatures(store, fresh.REFS, user=ctx.user, timestamps=(fresh.VIEW,)) if self._redis is None else None
        self._names = [f.name for f in self.view.features]
        self._scanned = False
        self._ledger = ThreadPoolExecutor(1, thread_name_prefix=f"atelier-ledger-{ctx.region}")
        self._group = GroupCommit(self._write_group, group_events)

    def products(self) -> pa.Array:
        """The catalog's product ids, read again whenever the catalog is rewritten."""
        return self._catalog()[1]

    def _catalog(self) -> tuple[int, pa.Array, frozenset[str]]:
        path = self.ctx.paths.catalog("products")
        stamp = (path / MARKER).stat().st_mtime_ns
        if self._products is None or self._products[0] != stamp:
            ids = read_dataset(path, None, columns=["product_id"]).column("product_id").combine_chunks()
            self._products = (stamp, ids, frozenset(ids.to_pylist()))
        return self._products

    def ingest(self, events: Sequence[Event]) -> Receipt:
        """Check a batch and store it in both stores; it is written with the batches that arrive
        while the one before is written (`atelier.events.group`), and answered once stored."""
        t0 = time.perf_counter()
        now = datetime.now(timezone.utc)
        table = to_table(list(events), now)
        check(table, self._catalog()[2], roster_index(self.ctx.settings, self.ctx.region), self.ctx.region, now)
        accepted = self._group.submit(table, table.num_rows)
        return Receipt(accepted, table.num_rows - accepted, time.perf_counter() - t0)

    def _write_group(self, tables: Sequence[pa.Table]) -> list[int]:
        """Write checked batches as one; how many of each one's events were new. An event twice in
        the group (the same time and id: a resend that raced its first sending) is the first
        batch's, a duplicate in the others."""
        owner = np.repeat(np.arange(len(tables)), [t.num_rows for t in tables])
        table, keys = tables[0], None
        if len(tables) > 1:
            table = pa.concat_tables(tables)
            first = {}
            kept = np.fromiter((first.setdefault(key, i) == i for i, key in enumerate(ledger_keys(table))), bool, table.num_rows)
            keys = list(first)  # the kept rows' keys, in their order: the ledger's lookup reuses them
            if not kept.all():
                table, owner = table.filter(pa.array(kept)), owner[kept]
        new = self._write(table, keys)
        return np.bincount(owner[new], minlength=len(tables)).tolist()

    def _write(self, table: pa.Table, keys: list[str] | None = None) -> np.ndarray:
        """Store the events of `table` the journal does not hold yet, in both stores (see the
        module's docstring); which rows were new. `keys`: its `ledger_keys`, where known."""
        with self.journal.lock():
            self._recover()
            # The ledger looks the ids up (SQLite, which lets go of the GIL) while the rows of the
            # batch's clients are asked for here: most batches hold new events only. A/B pairs of
            # batches in one process: 2.5-5% of a batch's time. The checks stay outside the lock,
            # so a service's workers check their batches side by side.
            lookup = self._ledger.submit(self._lookup, table, keys)
            try:
                reading = self._start_read(table)
            except BaseException:
                wait([lookup])  # the ledger is idle again before the lock is let go
                raise
            try:
                text, seen = lookup.result()
            except BaseException:
                reading.cancel()
                raise
            new, fresh_rows = table, np.ones(table.num_rows, bool)
            if seen:  # a resend: the rows asked for are those of the events not seen yet
                reading.cancel()
                unseen = pc.invert(pc.is_in(table.column("event_id"), value_set=pa.array(sorted(seen), pa.string())))
                new, fresh_rows = table.filter(unseen), unseen.to_numpy(zero_copy_only=False)
                reading = self._start_read(new) if new.num_rows else None
            if new.num_rows:  # Redis reads the rows while the part is written
                try:
                    part = self.journal.write_part(new)
                except BaseException:
                    reading.cancel()
                    raise
                writing = self._start_write(reading.result(), new)
                crash.point("events.sent")  # durable offline, the rows sent to Redis, the ledger does not know the part's ids
                try:  # the ledger learns the part's ids while Redis writes the rows
                    self.journal.index(part, new, text if new is table else None)
                except BaseException:
                    writing.cancel()
                    raise
                writing.result()
                crash.point("events.online")  # in both stores, the ledger does not know it is applied
                self.journal.mark_applied(part)
        return fresh_rows

    def _lookup(self, table: pa.Table, keys: list[str] | None) -> tuple[str, set[str]]:
        """The batch's ledger keys (`journal.ledger_text`, kept for its index) and the ids the
        journal holds already."""
        text = ledger_text(table, keys)
        return text, self.journal.seen(table, text)

    def recover(self) -> int:
        """Apply the journaled parts the online store may lack; how many parts were applied."""
        with self.journal.lock():
            return self._recover()

    def _recover(self) -> int:
        parts = self.journal.unapplied(scan=not self._scanned)  # the disk is listed once per process
        self._scanned = True
        for name in parts:
            events = self.journal.part(name)
            self.journal.index(name, events)  # its writer may have died before
            self._start_write(self._start_read(events).result(), events).result()
            self.journal.mark_applied(name)
            log.info("region %s: applied journaled part %s (%d events) to the online store", self.ctx.region, name, events.num_rows)
        return len(parts)

    def _start_read(self, events: pa.Table) -> _Sent:
        """Each client's fresh log and row time (microseconds), as the online store holds them; on
        Redis, the rows' bytes, read while the caller works (`result` waits for them)."""
        clients = list(dict.fromkeys(events.column("client_id").to_pylist()))
        if self._redis is not None:
            keys = self._redis.keys(pa.array(clients, pa.string()))
            return _Sent(self.ctx.region, lambda: self._redis.start_read(keys), lambda cells: splice.Stored(clients, keys, self._names, cells))
        return _Sent(self.ctx.region, lambda: _Done(self._decoded_rows(clients)))

    def _decoded_rows(self, clients: list[str]) -> dict[str, tuple[fresh.Log, int | None]]:
        cols, _ = self.reader.get(clients)
        out = {}
        for j, c in enumerate(clients):
            stamp = cols[f"_ts:{fresh.VIEW}"][j]
            out[c] = (fresh.Log.of({n: cols[n][j] for n in fresh.LOG_FIELDS}), fresh.micros(stamp))
        return out

    def _start_write(self, current: dict[str, tuple[fresh.Log, int | None]] | splice.Stored, events: pa.Table) -> _Sent:
        """Write the rows with `events` added; on Redis the spliced rows are sent and written while
        the caller works (`result` waits for Redis's replies)."""
        from atelier.features.engine import write_online

        def start():
            if not isinstance(current, splice.Stored):
                store = self.ctx.store
                return _Done(write_online(store.config, store._get_provider().online_store, self.view, fresh.table(_merged(current, events))))
            # Redis; clients checked against the roster already (batch.check). The rows go in
            # pieces of SEND_ROWS clients, each sent as soon as it is built: Redis writes a piece
            # while the next is spliced, instead of starting once the whole batch is.
            splicer, sent, exact = splice.Splicer(current, events), None, []
            try:
                for lo in range(0, len(current.clients), SEND_ROWS):
                    done = splicer.rows(lo, min(lo + SEND_ROWS, len(current.clients)))
                    exact.append(done.exact + lo)
                    if len(done.rows):
                        sent = self._redis.start_rows(pc.take(current.keys, done.rows + lo), done.cells, sent)
                exact = np.concatenate(exact) if exact else []
                if len(exact):  # rows the bytes cannot answer, merged the exact way
                    self._redis.write(fresh.table(_merged(_decoded(current, exact), events)))
            except BaseException:
                if sent is not None:
                    sent.cancel()
                raise
            return sent if sent is not None else _Done(None)

        return _Sent(self.ctx.region, start)

    def close(self) -> None:
        self._ledger.shutdown()
        self.journal.close()


class _Done:
    """What `_Sent` holds when the work was done at once (a store other than Redis)."""

    def __init__(self, value):
        self.value = value

    def result(self):
        return self.value

    def cancel(self) -> None:
        pass


class _Sent:
    """A read or a write of the online store, started now (`start`), waited for by `result`; a
    store that cannot be reached, at either end, is a `StoreUnavailable`."""

    def __init__(self, region: str, start: Callable, then: Callable = lambda x: x):
        self.region, self.then = region, then
        try:
            self.pending = start()
        except UNREACHABLE as e:
            raise _unavailable(region, e) from None

    def result(self):
        try:
            return self.then(self.pending.result())
        except UNREACHABLE as e:
            raise _unavailable(self.region, e) from None

    def cancel(self) -> None:
        self.pending.cancel()


def _merged(current: dict[str, tuple[fresh.Log, int | None]], events: pa.Table) -> list[dict]:
    """The exact way: each client's row, from its decoded log merged with its events (`current`
    holds the clients to write, `events` may hold others)."""
    return [fresh.row(client, fresh.merge(current[client][0], new), current[client][1])
            for client, new in fresh.by_client(events).items() if client in current]


def _decoded(stored: splice.Stored, rows) -> dict[str, tuple[fresh.Log, int | None]]:
    """The log and row time of some of the stored rows, decoded."""
    from atelier.features.online import _decode, _timestamp

    return {stored.clients[i]: (fresh.Log.of({name: _decode(stored.value(i, name)) for name in fresh.LOG_FIELDS}), fresh.micros(_timestamp(stored.value(i, "_ts"))))
            for i in rows}


def _redis_writer(store, view):
    """On Redis, the batch engine's writer of Feast's layout, without its "newer than stored"
    read: under the writer lock, each row was built newer than the row read a moment before. It
    also reads the rows (`RedisWriter.start_read`), as bytes for the splice."""
    from feast.infra.online_stores.redis import RedisOnlineStore, RedisType

    from atelier.features.engine import RedisWriter

    online = store._get_provider().online_store
    if not (isinstance(online, RedisOnlineStore) and store.config.online_store.redis_type == RedisType.redis):
        return None
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    writer = RedisWriter(store.config, online, view, chunk_rows=100_000)
    writer.dedup = False
    writer.client.set_retry(Retry(NoBackoff(), 0))  # a store that is down answers 503 now, not after ~10 s of retries
    return writer


def _unavailable(region: str, error: Exception) -> StoreUnavailable:
    return StoreUnavailable(f"the online store of region {region!r} cannot be reached ({type(error).__name__}: {str(error)[:200]})",
                            fix=f"send the batch again in {RETRY_AFTER_S} s: nothing of it was acknowledged, and a resent event is counted once")
