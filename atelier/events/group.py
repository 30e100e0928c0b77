"""Group commit: the requests that arrive while one group is written go together in the next one.

Each batch of events costs the intake about the same fixed work whatever its size: a journal part
(three files, five fsyncs, a ledger entry) and two Redis round trips. A service that receives one
event per request (a store's till, a page view) would pay it per event, one request at a time
under the region's writer lock: a few hundred events a second, however many requests wait. So a
request does not wait for the lock alone: it queues, and whichever request holds the lock writes
every request queued by then (up to `limit` events) as one batch, then hands each its answer.
The requests of a group succeed or fail together, and none is answered before its events are
stored (atelier.events.ingest).

The thread that writes is one of the requests' own (the first to find no group being written),
so there is no writer thread to start, stop or lose. It writes groups until its own request's is
done, then the others are woken: those answered return at once, each on its own (not one after
another through a lock), and one still queued writes the next group.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    """`submit(item, size)` returns `write(group)`'s answer for `item`, where `group` is `item` with
    the items submitted beside it, in order, of `limit` size at most (one item is always taken,
    however large). `write` returns one answer per item; an exception it raises is every item's."""

    def __init__(self, write: Callable[[Sequence[T]], Sequence[R]], limit: int):
        self._write, self.limit = write, limit
        self._queued: deque[tuple[T, int, Future]] = deque()
        self._state = threading.Condition()  # guards the queue and `_leading`; notified when a group is done
        self._leading = False  # a request is writing groups

    def submit(self, item: T, size: int) -> R:
        mine: Future = Future()
        with self._state:
            self._queued.append((item, size, mine))
            while not mine.done() and self._leading:  # a group is being written: this one waits for the next
                self._state.wait()
            if mine.done():  # written in another request's group
                return mine.result()
            self._leading = True
        try:
            while not mine.done():
                self._write_next()
        finally:
            with self._state:
                self._leading = False  # a request still queued writes the next group
                self._state.notify_all()
        return mine.result()

    def waiting(self) -> int:
        """Requests queued and not yet taken into a group."""
        with self._state:
            return len(self._queued)

    def writing(self) -> bool:
        """Whether a group is being written and no request waits behind it."""
        with self._state:
            return self._leading and not self._queued

    def _write_next(self) -> None:
        group, total = [], 0
        with self._state:
            while self._queued and (not group or total + self._queued[0][1] <= self.limit):
                item, size, answer = self._queued.popleft()
                group.append((item, answer))
                total += size
        try:
            answers = self._write([item for item, _ in group])
        except BaseException as e:
            for _, answer in group:
                answer.set_exception(e)
        else:
            for (_, answer), value in zip(group, answers, strict=True):
                answer.set_result(value)
        with self._state:
            self._state.notify_all()  # the requests of that group return at once, each on its own
