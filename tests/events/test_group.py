"""Group commit: batches that arrive while one is written are written together, and each answered once."""

from __future__ import annotations

import threading

from threads import submit_all

from atelier.events.group import GroupCommit


def test_requests_that_wait_are_written_together_each_answered_with_its_own_answer():
    groups, release, first_in = [], threading.Event(), threading.Event()

    def write(items):
        groups.append(list(items))
        if len(groups) == 1:  # the first group is being written while the others arrive
            first_in.set()
            release.wait(30)
        return [f"done {i}" for i in items]

    g = GroupCommit(write, limit=10)
    threads, out = submit_all(lambda i: g.submit(i, 1), ["a"])
    first_in.wait(30)
    more, more_out = submit_all(lambda i: g.submit(i, 1), ["b", "c", "d"], g.waiting)
    assert g.waiting() == 3 and groups == [["a"]]
    release.set()
    for t in threads + more:
        t.join(30)
    assert groups == [["a"], ["b", "c", "d"]]  # one write for the three that waited, in their order
    assert out == ["done a"] and more_out == ["done b", "done c", "done d"]


def test_a_group_holds_at_most_its_limit_and_a_larger_request_goes_alone():
    groups, release, first_in = [], threading.Event(), threading.Event()

    def write(items):
        groups.append([name for name, _ in items])
        if len(groups) == 1:
            first_in.set()
            release.wait(30)
        return [size for _, size in items]

    g = GroupCommit(write, limit=4)
    threads, _ = submit_all(lambda i: g.submit(i, i[1]), [("first", 1)])
    first_in.wait(30)
    more, out = submit_all(lambda i: g.submit(i, i[1]), [("a", 2), ("b", 2), ("c", 2), ("big", 9), ("d", 1)], g.waiting)
    release.set()
    for t in threads + more:
        t.join(30)
    assert groups == [["first"], ["a", "b"], ["c"], ["big"], ["d"]]
    assert out == [2, 2, 2, 9, 1]


def test_a_failed_write_fails_every_request_of_its_group_and_the_next_group_is_written():
    calls, release, first_in = [], threading.Event(), threading.Event()

    def write(items):
        calls.append(list(items))
        if len(calls) == 1:
            first_in.set()
            release.wait(30)
            return ["ok"]
        if len(calls) == 2:
            raise OSError("disk full")
        return ["ok"] * len(items)

    g = GroupCommit(write, limit=10)
    threads, out = submit_all(lambda i: g.submit(i, 1), ["a"])
    first_in.wait(30)
    more, failed = submit_all(lambda i: g.submit(i, 1), ["b", "c"], g.waiting)
    release.set()
    for t in threads + more:
        t.join(30)
    assert out == ["ok"] and all(isinstance(e, OSError) and "disk full" in str(e) for e in failed)
    assert g.submit("e", 1) == "ok" and calls[-1] == ["e"]
