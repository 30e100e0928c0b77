"""Continuous batching on one event loop: the requests that arrive while a batch runs form the next.

Why not BentoML's adaptive dispatcher: it lives behind `@bentoml.api(batchable=True)`, which
wants each HTTP request to carry a list, while /recommend takes one object. Its CorkDispatcher,
called directly (a private class), waits by a latency model fitted to the first requests, and in
front of it a lone request had to be answered on its own to keep c=1 latency low; under load half
the batches were that lone request (mean batch 2.6 at 32 connections).

Here the batch runs on the event loop (a few milliseconds of numpy and TensorFlow; handing it to
a thread costs more in GIL hand-offs than it saves). While it runs, requests queue in the sockets;
when it ends the loop reads them, they check in, and once a pass of the loop adds no one the next
batch starts with all of them. A request that finds the loop idle waits only that pass (~20 us).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Batcher(Generic[T, R]):
    """`await batcher(item)` answers `item` as part of a call `fn([items...])`.

    `fn` takes a list and returns one answer per item, in order. If it raises, every request of
    that batch gets the exception. `observe(n)` (optional) receives each batch's size.
    """

    def __init__(self, fn: Callable[[list[T]], Sequence[R]], max_batch: int = 64, settle: int = 2, observe: Callable[[int], None] | None = None):
        if max_batch < 1 or settle < 1:
            raise ValueError("max_batch and settle must be at least 1")
        self.fn, self.max_batch, self.settle, self.observe = fn, max_batch, settle, observe
        self._queue: list[tuple[T, asyncio.Future]] = []
        self._draining = False

    async def __call__(self, item: T) -> R:
        future = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if not self._draining:
            self._draining = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._queue:
                seen = -1
                while seen != len(self._queue) and len(self._queue) < self.max_batch:
                    seen = len(self._queue)
                    for _ in range(self.settle):  # each pass polls the sockets once
                        await asyncio.sleep(0)
                batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
                batch = [(item, f) for item, f in batch if not f.done()]  # a client that went away
                if not batch:
                    continue
                try:
                    answers = self.fn([item for item, _ in batch])
                    if len(answers) != len(batch):
                        raise RuntimeError(f"batch function answered {len(answers)} of {len(batch)} items")
                except Exception as e:
                    for _, f in batch:
                        if not f.done():
                            f.set_exception(e)
                    continue
                if self.observe:
                    self.observe(len(batch))
                for (_, f), a in zip(batch, answers):
                    if not f.done():
                        f.set_result(a)
        finally:
            self._draining = False
