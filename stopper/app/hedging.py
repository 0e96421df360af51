"""Hedged stop requests: cut the tail that timeouts would set, without waiting for them.

A stop request is idempotent (its key makes the institution execute it once), so when an
attempt is slower than the institution's usual answer, the same request with the same key is
sent once more and the first answer wins; the other is abandoned. Rules:

- an institution's usual answer is the 95th percentile of its last `SAMPLES` answered
  requests in this process; with fewer than `MIN_SAMPLES` of them nothing is hedged;
- the hedge leaves after that percentile (at least `MIN_DELAY_S`), and never when it could
  not answer within the attempt's own timeout anyway (after 3/4 of it);
- at most one hedge per attempt; a failed first request does not cancel the hedge (the first
  *answer* wins), and the attempt fails only when both failed.
Each hedge is counted by institution and by which request answered first.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TypeVar

from stopper import metrics

SAMPLES = 200
MIN_SAMPLES = 20
MIN_DELAY_S = 0.02
_RECOMPUTE_EVERY = 20

_T = TypeVar("_T")


class HedgeDelay:
    """The wait after which one institution's attempt is hedged, from its recent answers."""

    def __init__(self, timeout_s: float) -> None:
        self._timeout_s = timeout_s
        self._latencies: deque[float] = deque(maxlen=SAMPLES)
        self._since_recompute = 0
        self._delay: float | None = None

    def record(self, latency_s: float) -> None:
        self._latencies.append(latency_s)
        self._since_recompute += 1
        if self._since_recompute >= _RECOMPUTE_EVERY or self._delay is None:
            self._since_recompute = 0
            self._delay = self._compute()

    def delay(self) -> float | None:
        return self._delay

    def _compute(self) -> float | None:
        if len(self._latencies) < MIN_SAMPLES:
            return None
        ordered = sorted(self._latencies)
        p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
        delay = max(MIN_DELAY_S, p95)
        return delay if delay < self._timeout_s * 0.75 else None


async def hedged(call: Callable[[], Awaitable[_T]], delay: HedgeDelay, institution_code: str) -> _T:
    """`call()`, and once more if the first is slower than `delay` says; the first answer wins."""

    async def timed() -> _T:
        started = time.monotonic()
        result = await call()
        delay.record(time.monotonic() - started)
        return result

    wait = delay.delay()
    if wait is None:
        return await timed()
    first: asyncio.Future[_T] = asyncio.ensure_future(timed())
    requests: list[asyncio.Future[_T]] = [first]
    try:
        started, _ = await asyncio.wait({first}, timeout=wait)
        if started:
            return first.result()
        second: asyncio.Future[_T] = asyncio.ensure_future(timed())
        requests.append(second)
        pending: set[asyncio.Future[_T]] = {first, second}
        error: BaseException | None = None
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task.exception() is None:
                    winner = "first" if task is first else "hedge"
                    metrics.STOP_HEDGES.labels(institution_code, winner).inc()
                    return task.result()
                error = task.exception()
        metrics.STOP_HEDGES.labels(institution_code, "neither").inc()
        assert error is not None
        raise error
    finally:
        # Neither request outlives the attempt: not when one answered, nor when the attempt
        # itself was cancelled (its caller's own timeout) while they were under way; and the
        # outcome of each is retrieved, so a loser's failure is not logged as never retrieved.
        for task in requests:
            if not task.done():
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
