"""`RequestBatcher`: concurrent calls gathered into requests, latency first, each call bounded
by its own timeout."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

import pytest

from stopper.adapters.institutions.batching import RequestBatcher


class Institution:
    """Answers each item with its double; `hold` keeps requests open until released."""

    def __init__(self, hold: bool = False) -> None:
        self.requests: list[list[int]] = []
        self.released = asyncio.Event()
        if not hold:
            self.released.set()
        self.fail: Exception | None = None
        self.preparing_s = 0.0
        self.arrived: asyncio.Queue[list[int]] = asyncio.Queue()

    async def send(
        self, items: Sequence[int], leaving: Callable[[], None]
    ) -> Sequence[int | Exception]:
        await asyncio.sleep(self.preparing_s)  # its own part, before the request leaves
        leaving()
        self.requests.append(list(items))
        self.arrived.put_nowait(list(items))
        await self.released.wait()
        if self.fail is not None:
            raise self.fail
        return [ValueError(f"no {i}") if i < 0 else 2 * i for i in items]


def batcher(
    institution: Institution, *, max_batch: int = 50, window_s: float = 0.005, in_flight: int = 8
) -> RequestBatcher[int, int]:
    return RequestBatcher(
        institution.send, max_batch=max_batch, window_s=window_s, max_in_flight=in_flight
    )


async def test_a_lone_call_leaves_at_once_whatever_the_window() -> None:
    institution = Institution()
    calls = batcher(institution, window_s=10.0)
    started = time.monotonic()
    assert await calls.call(21, timeout_s=5) == 42
    assert time.monotonic() - started < 0.5
    assert institution.requests == [[21]]


async def test_calls_made_together_leave_as_one_request() -> None:
    institution = Institution()
    calls = batcher(institution, window_s=10.0)
    assert await asyncio.gather(*(calls.call(i, timeout_s=5) for i in range(5))) == [
        0,
        2,
        4,
        6,
        8,
    ]
    assert institution.requests == [[0, 1, 2, 3, 4]]


async def test_while_a_request_is_in_flight_calls_wait_for_the_window_and_go_together() -> None:
    institution = Institution(hold=True)
    calls = batcher(institution, window_s=0.05)
    first = asyncio.create_task(calls.call(1, timeout_s=5))
    assert await institution.arrived.get() == [1]
    started = time.monotonic()
    later = [asyncio.create_task(calls.call(i, timeout_s=5)) for i in (2, 3)]
    await asyncio.sleep(0.01)
    later.append(asyncio.create_task(calls.call(4, timeout_s=5)))
    await asyncio.sleep(0.01)
    assert institution.requests == [[1]], "the window has not passed"
    assert await asyncio.wait_for(institution.arrived.get(), 1) == [2, 3, 4]
    waited = time.monotonic() - started
    assert 0.04 <= waited < 0.5, waited
    assert institution.requests == [[1], [2, 3, 4]]
    institution.released.set()
    assert [await first, *[await t for t in later]] == [2, 4, 6, 8]


async def test_a_full_batch_leaves_without_waiting_for_the_window() -> None:
    institution = Institution(hold=True)
    calls = batcher(institution, max_batch=3, window_s=10.0)
    first = asyncio.create_task(calls.call(0, timeout_s=5))
    await asyncio.sleep(0.01)
    tasks = [asyncio.create_task(calls.call(i, timeout_s=5)) for i in range(1, 8)]
    await asyncio.sleep(0.05)
    # Two full batches left at once; the seventh call waits for the window or more company.
    assert institution.requests == [[0], [1, 2, 3], [4, 5, 6]]
    assert calls.waiting == 1
    institution.released.set()
    await first
    await asyncio.gather(*tasks[:6])
    tasks[6].cancel()


async def test_no_more_requests_in_flight_than_allowed_and_the_queue_goes_in_the_next() -> None:
    institution = Institution(hold=True)
    calls = batcher(institution, window_s=0.0, in_flight=1)
    first = asyncio.create_task(calls.call(0, timeout_s=5))
    await asyncio.sleep(0.01)
    queued = [asyncio.create_task(calls.call(i, timeout_s=5)) for i in range(1, 6)]
    await asyncio.sleep(0.05)
    assert institution.requests == [[0]] and calls.in_flight == 1 and calls.waiting == 5
    institution.released.set()
    assert await first == 0
    assert await asyncio.gather(*queued) == [2, 4, 6, 8, 10]
    assert institution.requests == [[0], [1, 2, 3, 4, 5]]


async def test_each_call_keeps_its_own_timeout() -> None:
    institution = Institution(hold=True)
    calls = batcher(institution)
    patient = asyncio.create_task(calls.call(1, timeout_s=5))
    impatient = asyncio.create_task(calls.call(2, timeout_s=0.05))
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await impatient
    assert time.monotonic() - started < 0.5
    institution.released.set()
    assert await patient == 2, "the others' request is not cancelled"
    assert institution.requests == [[1, 2]]


async def test_a_call_that_gives_up_before_its_batch_leaves_is_not_sent() -> None:
    institution = Institution(hold=True)
    calls = batcher(institution, window_s=0.05, in_flight=1)
    first = asyncio.create_task(calls.call(0, timeout_s=5))
    await asyncio.sleep(0.01)
    gives_up = asyncio.create_task(calls.call(1, timeout_s=5, wait_s=0.02))
    cancelled = asyncio.create_task(calls.call(2, timeout_s=5))
    stays = asyncio.create_task(calls.call(3, timeout_s=5))
    await asyncio.sleep(0.01)
    cancelled.cancel()
    with pytest.raises(TimeoutError):
        await gives_up
    institution.released.set()
    await first
    assert await stays == 6
    assert institution.requests == [[0], [3]]


async def test_a_failed_request_fails_every_call_it_carried() -> None:
    institution = Institution()
    institution.fail = ConnectionError("down")
    calls = batcher(institution)
    results = await asyncio.gather(
        *(calls.call(i, timeout_s=5) for i in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, ConnectionError) for r in results)
    assert institution.requests == [[0, 1, 2]]


async def test_one_call_may_fail_alone() -> None:
    institution = Institution()
    calls = batcher(institution)
    results = await asyncio.gather(
        calls.call(1, timeout_s=5), calls.call(-1, timeout_s=5), return_exceptions=True
    )
    assert results[0] == 2 and isinstance(results[1], ValueError)


async def test_close_waits_for_requests_under_way() -> None:
    institution = Institution(hold=True)
    calls = batcher(institution)
    task = asyncio.create_task(calls.call(1, timeout_s=5))
    await asyncio.sleep(0.01)
    closing = asyncio.create_task(calls.close())
    await asyncio.sleep(0.01)
    assert not closing.done()
    institution.released.set()
    await closing
    assert await task == 2


async def test_a_call_waits_at_most_wait_s_to_leave_then_timeout_s_from_leaving() -> None:
    institution = Institution(hold=True)
    calls = batcher(institution, window_s=0.0, in_flight=1)
    first = asyncio.create_task(calls.call(0, timeout_s=0.3))
    assert await institution.arrived.get() == [0]
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError):
        await calls.call(1, timeout_s=5, wait_s=0.05)  # queued behind the one in flight
    assert loop.time() - started < 0.25
    assert institution.requests == [[0]], "it never left"
    with pytest.raises(TimeoutError):
        await first  # left at once: bounded by timeout_s from then
    assert 0.25 <= loop.time() - started < 1.0
    institution.released.set()


async def test_the_answer_is_timed_from_when_the_request_leaves_not_from_the_call() -> None:
    institution = Institution()
    institution.preparing_s = 0.2  # Stopper's own part (recording the message) is slow
    calls = batcher(institution)
    assert await calls.call(3, timeout_s=0.1) == 6


async def test_calls_made_first_wait_ahead_and_leave_in_the_next_request() -> None:
    institution = Institution(hold=True)
    calls = batcher(institution, max_batch=2, window_s=0.01, in_flight=1)
    busy = asyncio.create_task(calls.call(1, timeout_s=5))
    assert await institution.arrived.get() == [1]
    waiting = [asyncio.create_task(calls.call(i, timeout_s=5)) for i in (2, 3)]
    await asyncio.sleep(0)
    waiting += [asyncio.create_task(calls.call(i, timeout_s=5, first=True)) for i in (8, 9)]
    await asyncio.sleep(0.03)  # the window passed; the one request slot is still taken
    institution.released.set()
    assert await asyncio.gather(busy, *waiting) == [2, 4, 6, 16, 18]
    assert institution.requests == [[1], [8, 9], [2, 3]]
