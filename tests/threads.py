"""Requests sent from threads of their own, for the tests of what happens while others wait."""

from __future__ import annotations

import threading
import time


def until(condition, seconds: float = 30.0) -> None:
    stop = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < stop, "timed out"
        time.sleep(0.005)


def submit_all(submit, items: list, queued=None) -> tuple[list[threading.Thread], list]:
    """Submit each item from a thread of its own, in order: with `queued` (the requests waiting),
    each is queued before the next starts. The threads, and a list that will hold each item's
    answer, or the exception it raised."""
    out: list = [None] * len(items)

    def run(k, item):
        try:
            out[k] = submit(item)
        except BaseException as e:  # noqa: BLE001 - what the caller checks
            out[k] = e

    threads = []
    for k, item in enumerate(items):
        before = queued() if queued else 0
        threads.append(threading.Thread(target=run, args=(k, item)))
        threads[-1].start()
        if queued:
            until(lambda: queued() > before)
    return threads, out
