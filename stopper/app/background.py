"""Background loops (outbox relay, retry sweeper, gauges): run, and never die of one failure."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from stopper.errors import BusRefused

log = logging.getLogger(__name__)

# How long a loop waits before it tries again what the bus refused (`BusRefused`: a record too
# large, a topic it may not use). Trying again at once cannot help; trying never again would
# leave the process broken after the cause is fixed (an ACL granted, a limit raised).
REFUSED_RETRY_S = 30.0


class RefusedLoops:
    """The loops of this process whose work the bus refuses right now. Each keeps trying,
    slowly, and leaves the set once it succeeds; the process is not ready while any is here."""

    def __init__(self) -> None:
        self._names: set[str] = set()

    def refused(self, name: str) -> None:
        self._names.add(name)

    def cleared(self, name: str) -> None:
        self._names.discard(name)

    def names(self) -> frozenset[str]:
        return frozenset(self._names)


async def run_periodically(
    name: str,
    step: Callable[[], Awaitable[int]],
    *,
    interval_s: float,
    stopping: asyncio.Event,
    wake: asyncio.Event | None = None,
    max_error_delay_s: float = 10.0,
    refusals: RefusedLoops | None = None,
    refused_retry_s: float = REFUSED_RETRY_S,
) -> None:
    """Call `step` again and again until `stopping`.

    After a step that did work (returned > 0) the next follows at once; after an idle step the
    loop waits `interval_s` or until `wake` is set. A failing step is logged and retried with
    growing delays. When the bus refuses what the step sends (`BusRefused`, e.g. an outbox
    record too large for the broker) the step is tried again only every `refused_retry_s`,
    logged critical each time, and the loop counts in `refusals` (the process is not ready)
    until a step succeeds.
    """
    error_delay = interval_s
    while not stopping.is_set():
        try:
            did = await step()
            error_delay = interval_s
            if refusals is not None:
                refusals.cleared(name)
        except BusRefused:
            log.critical(
                "%s: the bus refuses what it sends; trying again in %.0fs",
                name,
                refused_retry_s,
                exc_info=True,
            )
            if refusals is not None:
                refusals.refused(name)
            await _wait(stopping, None, refused_retry_s)
            continue
        except Exception:
            log.exception("%s failed; retrying in %.1fs", name, error_delay)
            await _wait(stopping, None, error_delay)
            error_delay = min(error_delay * 2, max_error_delay_s)
            continue
        if did:
            await asyncio.sleep(0)
        else:
            await _wait(stopping, wake, interval_s)


async def _wait(stopping: asyncio.Event, wake: asyncio.Event | None, timeout: float) -> None:
    waiters = [asyncio.ensure_future(stopping.wait())]
    if wake is not None:
        waiters.append(asyncio.ensure_future(wake.wait()))
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiter
    if wake is not None:
        wake.clear()


class BackgroundWork:
    """Tasks started to run on their own (attempts at institutions), kept track of so they can
    be waited for or abandoned; a failure is logged, never raised into the starter."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._tasks: set[asyncio.Task[None]] = set()
        # Who waits in `wait_below`, with the count they wait to go under.
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    def start(self, work: Awaitable[None], **log_fields: str) -> None:
        task = asyncio.create_task(self._logged(work, log_fields))
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def __len__(self) -> int:
        return len(self._tasks)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not self._waiters:
            return
        running = len(self._tasks)
        for limit, waiter in self._waiters:
            if running < limit and not waiter.done():
                waiter.set_result(None)

    async def wait_below(self, limit: int, timeout_s: float) -> bool:
        """Wait until fewer than `limit` tasks are running, for at most `timeout_s` (backpressure
        for who starts them); False if they still are. Each task that finishes costs a look at
        the waiters, not at every task in flight (thousands under a burst)."""
        if len(self._tasks) < limit:
            return True
        entry = (limit, asyncio.get_running_loop().create_future())
        self._waiters.append(entry)
        try:
            await asyncio.wait_for(entry[1], timeout_s)
        except TimeoutError:
            return len(self._tasks) < limit
        finally:
            self._waiters.remove(entry)
        return True

    async def wait_idle(self) -> None:
        """Wait until everything started so far (and what it starts) has finished."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        """Abandon what is in flight: leases lapse and the sweepers take the work over."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _logged(self, work: Awaitable[None], log_fields: dict[str, str]) -> None:
        try:
            await work
        except Exception:
            log.exception("%s failed; its sweeper retries it later", self._name, extra=log_fields)
