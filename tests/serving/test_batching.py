"""The service's batcher: what arrives together is answered together, in order, and a failure
reaches exactly the requests of its batch."""

from __future__ import annotations

import asyncio

import pytest

from atelier.serving.batching import Batcher


def _run(coro):
    return asyncio.run(coro)


def test_requests_that_arrive_together_form_one_batch_and_get_their_own_answers():
    batches = []

    def fn(items):
        batches.append(list(items))
        return [i * 10 for i in items]

    async def main():
        b = Batcher(fn)
        return await asyncio.gather(*(b(i) for i in range(20)))

    assert _run(main()) == [i * 10 for i in range(20)]
    assert batches == [list(range(20))]


def test_a_lone_request_is_answered_alone_without_waiting_for_company():
    sizes = []

    async def main():
        b = Batcher(lambda items: list(items), observe=sizes.append)
        loop = asyncio.get_running_loop()
        t = loop.time()
        first = await b("a")
        second = await b("b")
        return first, second, loop.time() - t

    first, second, took = _run(main())
    assert (first, second) == ("a", "b") and sizes == [1, 1]
    assert took < 0.05, took  # a few passes of the loop, no timer


def test_arrivals_during_a_batch_form_the_next_one_and_max_batch_is_kept():
    batches = []

    async def main():
        b = Batcher(lambda items: batches.append(list(items)) or list(items), max_batch=8)

        async def later(i):
            await asyncio.sleep(0.01)  # arrives while nothing runs: a batch of its own wave
            return await b(i)

        return await asyncio.gather(*(b(i) for i in range(20)), *(later(i) for i in range(100, 103)))

    out = _run(main())
    assert out == list(range(20)) + [100, 101, 102]
    assert [len(x) for x in batches] == [8, 8, 4, 3]
    assert sum(batches, []) == out


def test_a_failing_batch_fails_its_requests_only_and_the_next_batch_is_served():
    calls = []

    def fn(items):
        calls.append(list(items))
        if "bad" in items:
            raise ValueError("boom")
        return [x.upper() for x in items]

    async def main():
        b = Batcher(fn)
        first = await asyncio.gather(b("ok"), b("bad"), return_exceptions=True)
        second = await asyncio.gather(b("x"), b("y"))
        return first, second

    first, second = _run(main())
    assert all(isinstance(e, ValueError) and str(e) == "boom" for e in first)
    assert second == ["X", "Y"] and calls == [["ok", "bad"], ["x", "y"]]


def test_an_answer_count_that_does_not_match_is_an_error_not_a_shifted_answer():
    async def main():
        b = Batcher(lambda items: list(items)[:-1])
        return await asyncio.gather(b(1), b(2), return_exceptions=True)

    errors = _run(main())
    assert all(isinstance(e, RuntimeError) and "answered 1 of 2" in str(e) for e in errors)


def test_a_cancelled_request_is_left_out_of_its_batch():
    seen = []

    async def main():
        b = Batcher(lambda items: seen.append(list(items)) or list(items))
        gone = asyncio.ensure_future(b("gone"))
        kept = asyncio.ensure_future(b("kept"))
        await asyncio.sleep(0)  # both checked in, the batch still settling
        gone.cancel()
        return await kept

    assert _run(main()) == "kept" and seen == [["kept"]]


@pytest.mark.parametrize("kwargs", [{"max_batch": 0}, {"settle": 0}])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        Batcher(list, **kwargs)
