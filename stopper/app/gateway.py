"""`InstitutionGateway`: every call Stopper makes to an institution goes through here.

Stop requests, status inquiries, reconciliation queries, freeze, return and release orders all
leave through `InstitutionGateway`, which wraps the institution port (`InstitutionAdapter`) with
what every call to one institution shares, per institution and per process:
- slots: at most the institution's `concurrency` calls at once (`holds_in_flight`: for an
  institution that takes many holds per request, `batch_size` times as many calls, which its
  adapter sends in at most `concurrency` requests); a stop request for a known mule account
  takes the next free slot before calls without priority, and bulk work (a re-verification's
  status queries) waits behind every live call and holds only a share of the slots
  (`PrioritySlots`, its lanes);
- a circuit breaker: while it is open a call is refused with `BreakerOpen` before anything is
  sent; a retryable failure counts against it, an answer (even a refusal) for it; a request
  that carried many holds counts once (`InstitutionError.counted_elsewhere` on the others);
- a timeout: the adapter bounds each request by the institution's `timeout_ms`; the gateway
  bounds the whole call (a hedged one is two requests) so that nothing waits forever on an
  adapter that does not. A call that failed while this process's event loop stalled for at
  least `STALL_EXCUSES` of the institution's timeout (`LoopLag`) is not counted against the
  breaker: the process, not the institution, was late (`stopper_institution_calls_excused_total`);
  the use case retries it as any failed call;
- hedging of stop requests (see `hedging`), when enabled;
- the institution's health (latency, failures) and each operation's attempt metric;
- `retry_after`: when a failed call may be made again, by the institution's retry policy and
  no sooner than its breaker lets calls through.
The use cases keep their own bookkeeping (leases, attempt counters, deadlines on the hold);
what a call may cost and how it is made is decided here, once.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import TypeVar

from prometheus_client import Counter

from stopper import metrics
from stopper.app.breaker import CircuitBreaker
from stopper.app.health import HealthSnapshot, InstitutionHealth
from stopper.app.hedging import HedgeDelay, hedged
from stopper.app.loop_lag import LoopLag
from stopper.app.ports import InstitutionAdapter
from stopper.app.slots import Lane, PrioritySlots
from stopper.domain.messages import (
    InstitutionAnswer,
    OrderAnswer,
    OrderFreeze,
    OrderRelease,
    OrderReturn,
    RequestStop,
    StopStatus,
)
from stopper.domain.mules import is_flagged
from stopper.errors import BreakerOpen, InstitutionError, InstitutionTimeout, InstitutionUnavailable
from stopper.registry import Institution, Registry

log = logging.getLogger(__name__)

_T = TypeVar("_T")
# Past the adapter's own bound: the slack a call is given before the gateway cuts it.
_TIMEOUT_SLACK_S = 1.0
# What a batching adapter's own part of a call may take before its request leaves (recording
# the message in the store, which has its own statement timeout).
_BATCH_OWN_PART_S = 30.0
# A stall of the event loop this long, as a share of the institution's timeout, during a failed
# call excuses the institution.
STALL_EXCUSES = 0.25


class Operation(enum.StrEnum):
    STOP = "stop"
    STATUS = "status"
    STATUSES = "statuses"
    FREEZE = "freeze"
    RETURN = "return"
    RELEASE = "release"


class InstitutionGateway:
    def __init__(
        self,
        adapter: InstitutionAdapter,
        registry: Registry,
        *,
        hedge: bool,
        rng: random.Random | None = None,
        lag: LoopLag | None = None,
    ) -> None:
        self._adapter = adapter
        self._lag = lag
        self.registry = registry
        self._rng = rng or random.Random()
        self._breakers = {code: CircuitBreaker(i.breaker) for code, i in registry.items()}
        self._slots = {code: PrioritySlots(i.holds_in_flight) for code, i in registry.items()}
        # Slow stop attempts are sent once more with the same key (see `hedging`).
        self._hedges = (
            {code: HedgeDelay(i.timeout_ms / 1000) for code, i in registry.items()}
            if hedge
            else None
        )
        self.health = InstitutionHealth()

    # --- the operations -----------------------------------------------------------------------

    async def request_stop(
        self, institution: Institution, request: RequestStop
    ) -> InstitutionAnswer:
        """One stop attempt (hedged when enabled), counted in `stopper_stop_attempts_total`."""

        def stop() -> Awaitable[InstitutionAnswer]:
            return self._adapter.request_stop(institution, request)

        hedges = self._hedges
        first = is_flagged(request.mule_cases)
        try:
            if hedges is None:
                answer = await self._call(institution, Operation.STOP, stop, first=first)
            else:
                answer = await self._call(
                    institution,
                    Operation.STOP,
                    lambda: hedged(stop, hedges[institution.code], institution.code),
                    requests=2,
                    first=first,
                )
        except InstitutionError as e:
            metrics.STOP_ATTEMPTS.labels(institution.code, failure_label(e)).inc()
            if isinstance(e, InstitutionTimeout):
                metrics.STOP_TIMEOUTS.labels(institution.code).inc()
            raise
        metrics.STOP_ATTEMPTS.labels(institution.code, answer.kind.value).inc()
        return answer

    async def stop_status(self, institution: Institution, idempotency_key: str) -> StopStatus:
        """A status inquiry, counted in `stopper_status_inquiries_total`."""
        try:
            status = await self._call(
                institution,
                Operation.STATUS,
                lambda: self._adapter.stop_status(institution, idempotency_key),
            )
        except InstitutionError as e:
            metrics.STATUS_INQUIRIES.labels(institution.code, failure_label(e)).inc()
            raise
        metrics.STATUS_INQUIRIES.labels(institution.code, status.kind.value).inc()
        return status

    async def stop_statuses(
        self, institution: Institution, idempotency_keys: Sequence[str], *, bulk: bool = False
    ) -> list[StopStatus]:
        """Reconciliation's (or, with `bulk`, a re-verification's) query about many requests at
        once; bulk queries take their slot in `Lane.BULK`, behind every live call."""
        return await self._call(
            institution,
            Operation.STATUSES,
            lambda: self._adapter.stop_statuses(institution, idempotency_keys),
            lane=Lane.BULK if bulk else Lane.LIVE,
        )

    async def request_freeze(self, institution: Institution, request: OrderFreeze) -> OrderAnswer:
        """One freeze attempt, counted in `stopper_freeze_attempts_total`."""
        return await self._order(
            institution,
            Operation.FREEZE,
            lambda: self._adapter.request_freeze(institution, request),
            metrics.FREEZE_ATTEMPTS,
            "frozen",
        )

    async def request_return(self, institution: Institution, request: OrderReturn) -> OrderAnswer:
        """One return attempt, counted in `stopper_return_attempts_total`."""
        return await self._order(
            institution,
            Operation.RETURN,
            lambda: self._adapter.request_return(institution, request),
            metrics.RETURN_ATTEMPTS,
            "returned",
        )

    async def request_release(self, institution: Institution, request: OrderRelease) -> OrderAnswer:
        """One release attempt, counted in `stopper_release_attempts_total`."""
        return await self._order(
            institution,
            Operation.RELEASE,
            lambda: self._adapter.request_release(institution, request),
            metrics.RELEASE_ATTEMPTS,
            "released",
        )

    # --- retries, breakers, health ------------------------------------------------------------

    def retry_after(
        self, institution: Institution, attempt: int, error: InstitutionError
    ) -> timedelta | None:
        """How long to wait before the attempt after `attempt`, which failed with `error`:
        exponential backoff with full jitter (the institution's retry policy), and no sooner than
        its breaker lets calls through again. None: not to be retried (the error says so)."""
        if not error.retryable:
            return None
        delay = institution.retry.backoff(attempt, self._rng)
        if isinstance(error, InstitutionUnavailable):
            breaker_wait = timedelta(seconds=self._breakers[institution.code].retry_after_s())
            delay = max(delay, breaker_wait)
        return delay

    @property
    def lag(self) -> LoopLag | None:
        """The event loop's stalls this gateway allows for (run it in the process's loop)."""
        return self._lag

    def breaker(self, code: str) -> CircuitBreaker:
        return self._breakers[code]

    def health_snapshots(self) -> list[HealthSnapshot]:
        """This instance's view of every institution in the registry (attempts 0 for those it
        has not called lately)."""
        return [
            self.health.snapshot(code, breaker.state.value)
            for code, breaker in self._breakers.items()
        ]

    def publish_breaker_states(self) -> None:
        for code, breaker in self._breakers.items():
            metrics.BREAKER_STATE.labels(code).set(breaker.state.value)

    # --- the one way a call is made -----------------------------------------------------------

    async def _order(
        self,
        institution: Institution,
        operation: Operation,
        call: Callable[[], Awaitable[OrderAnswer]],
        attempts: Counter,
        done_label: str,
    ) -> OrderAnswer:
        try:
            answer = await self._call(institution, operation, call)
        except InstitutionError:
            attempts.labels(institution.code, "error").inc()
            raise
        attempts.labels(institution.code, done_label if answer.done else "rejected").inc()
        return answer

    async def _call(
        self,
        institution: Institution,
        operation: Operation,
        call: Callable[[], Awaitable[_T]],
        requests: int = 1,
        first: bool = False,
        lane: Lane = Lane.LIVE,
    ) -> _T:
        """`call()` under the institution's slots and breaker, bounded in time, its latency and
        failure in the institution's health. `requests`: how many timeouts in a row the call
        may take (a hedged stop request is two requests); `first`: ahead of other waiters for
        a slot; `lane`: the slot's lane otherwise (`Lane.BULK`: behind every live call)."""
        breaker = self._breakers[institution.code]
        bound_s = requests * institution.timeout_ms / 1000 + _TIMEOUT_SLACK_S
        if institution.batch_size > 1:
            # A hold an institution takes in batches first waits, inside its adapter, for a
            # message slot (one exchange at most) and the record of its message (Stopper's
            # store), as others wait for a slot here.
            bound_s += institution.timeout_ms / 1000 + _BATCH_OWN_PART_S
        async with self._slots[institution.code].taken(lane=Lane.FIRST if first else lane):
            if not breaker.allow():
                self.health.record(institution.code, failed=True, latency_s=0.0)
                raise BreakerOpen("circuit breaker open")
            trips = breaker.trips
            started = time.monotonic()
            loop_started = asyncio.get_running_loop().time()
            try:
                try:
                    async with asyncio.timeout(bound_s):
                        result = await call()
                except TimeoutError as e:
                    raise InstitutionTimeout(
                        f"{operation.value}: no answer within {bound_s:.1f} s"
                    ) from e
            except InstitutionError as e:
                self.health.record(
                    institution.code, failed=True, latency_s=time.monotonic() - started
                )
                if e.counted_elsewhere:
                    pass  # one request of many holds: counted with the first of them
                elif e.retryable and self._stalled(institution, loop_started):
                    metrics.CALLS_EXCUSED.labels(institution.code).inc()
                elif e.retryable:
                    breaker.record_failure()
                else:
                    breaker.record_success()  # it answered; the request was the problem
                raise
            else:
                self.health.record(
                    institution.code, failed=False, latency_s=time.monotonic() - started
                )
                breaker.record_success()
                return result
            finally:
                if breaker.trips > trips:
                    metrics.BREAKER_TRIPS.labels(institution.code).inc()
                    log.warning("breaker opened", extra={"institution": institution.code})
                metrics.BREAKER_STATE.labels(institution.code).set(breaker.state.value)

    def _stalled(self, institution: Institution, loop_started: float) -> bool:
        """Whether this process's loop stalled, during a call begun at `loop_started`, for
        long enough to have made it fail whatever the institution did."""
        if self._lag is None:
            return False
        stall = self._lag.stalled_since(loop_started)
        return stall >= STALL_EXCUSES * institution.timeout_ms / 1000


def failure_label(error: InstitutionError) -> str:
    """The metric label of a failed call."""
    names = {
        "BreakerOpen": "breaker_open",
        "InstitutionTimeout": "timeout",
        "InstitutionUnavailable": "unavailable",
        "MalformedAnswer": "malformed",
        "RequestRefused": "refused",
    }
    return names.get(type(error).__name__, "error")
