"""Orders about a stopped hold that go to its institution afterwards: a formal freeze, a return.

What they share:
- the order is recorded on the hold first, then sent at once in the background; a sweeper sends
  again what is due (after a crash, a timeout, an error);
- each attempt takes a lease on the hold (its next-attempt time moves past the institution's
  timeout), so two attempts never overlap; the request carries the order's idempotency key, so
  sending again never acts twice;
- a failure is retried with exponential backoff and full jitter up to the institution's attempt
  limit; the last failure, or a refusal, is recorded and left for a person, counted in
  `stopper_orders_left_total{order,outcome}` (the StopperOrdersLeftForAPerson alert);
- every attempt goes through the `InstitutionGateway` (slots, breaker, timeout, health, the
  order's attempt metric), like stop requests do.
"""

from __future__ import annotations

import abc
import logging
import random
from datetime import datetime, timedelta
from typing import ClassVar
from uuid import UUID

from stopper import metrics
from stopper.app.background import BackgroundWork
from stopper.app.gateway import InstitutionGateway
from stopper.app.hold_changes import Order, OrderLeased, OrderProgress, order_progress
from stopper.app.ports import Clock, HoldRecord, HoldUnitOfWork, HoldUpdate
from stopper.domain.messages import OrderAnswer
from stopper.errors import BreakerOpen, InstitutionError
from stopper.registry import Institution

log = logging.getLogger(__name__)

_LEASE_MARGIN = timedelta(seconds=2)


class InstitutionOrders(abc.ABC):
    kind: ClassVar[Order]

    def __init__(
        self,
        store: HoldUnitOfWork,
        gateway: InstitutionGateway,
        clock: Clock,
        rng: random.Random | None = None,
    ) -> None:
        self._store = store
        self._gateway = gateway
        self._registry = gateway.registry
        self._clock = clock
        self._rng = rng or random.Random()
        self._in_flight = BackgroundWork(f"{self.kind.value} attempt")

    # What each kind of order says for itself.

    @abc.abstractmethod
    def _may_send(self, record: HoldRecord) -> bool: ...

    @abc.abstractmethod
    async def _due(self, now: datetime, limit: int) -> list[UUID]: ...

    @abc.abstractmethod
    async def _send(
        self, institution: Institution, record: HoldRecord, now: datetime
    ) -> OrderAnswer: ...

    @abc.abstractmethod
    def _done(self, record: HoldRecord, answer: OrderAnswer, now: datetime) -> HoldUpdate | None:
        """The change a confirmation makes (None if the hold moved on meanwhile)."""

    @abc.abstractmethod
    def _refused(self, record: HoldRecord, reason: str, now: datetime) -> HoldUpdate:
        """The change a refusal makes: the institution said it will not act."""

    def _gave_up(self, record: HoldRecord, reason: str, now: datetime) -> HoldUpdate:
        """The change the last failed attempt makes. The outcome is unknown (the institution may
        have acted without answering), so nothing moves: a person asks again, with the same key."""
        return HoldUpdate(
            at=now,
            change=self._bookkeeping(
                self._progress(record)[0], None, f"{reason}; a person must act"
            ),
        )

    def _progress(self, record: HoldRecord) -> tuple[int, datetime | None]:
        """Attempts made so far and when the next is due (None: nothing to send)."""
        return order_progress(record, self.kind)

    def _bookkeeping(
        self, attempts: int, next_attempt_at: datetime | None, reason: str | None
    ) -> OrderProgress:
        """The change that records the order's progress after an attempt, and why."""
        return OrderProgress(self.kind, attempts, next_attempt_at, reason)

    # The shared mechanics.

    def send_soon(self, hold_id: UUID) -> None:
        self._in_flight.start(self.attempt(hold_id), hold_id=str(hold_id))

    async def sweep_once(self) -> int:
        due = await self._due(self._clock.now(), 200)
        for hold_id in due:
            self.send_soon(hold_id)
        await self._in_flight.wait_idle()
        return len(due)

    async def wait_idle(self) -> None:
        await self._in_flight.wait_idle()

    async def close(self) -> None:
        await self._in_flight.close()

    async def attempt(self, hold_id: UUID) -> None:
        now = self._clock.now()
        claimed = await self._store.update_hold(hold_id, lambda r: self._claim(r, now))
        if claimed is None:
            return
        record, _ = claimed  # as it was before the claim
        institution = self._registry[record.hold.institution_code]
        attempt = self._progress(record)[0] + 1
        try:
            answer = await self._send(institution, record, now)
        except InstitutionError as e:
            await self._failed(hold_id, attempt, f"{self.kind.value} attempt {attempt}: {e}", e)
            return
        if not answer.done:
            why = answer.reason or "no reason given"
            reason = f"{self.kind.value} refused by the institution: {why}"
            await self._failed(hold_id, attempt, reason, None)
            return
        await self._store.update_hold(
            hold_id,
            lambda r: (
                self._done(r, answer, self._clock.now()) if self._current(r, attempt) else None
            ),
        )

    async def _failed(
        self, hold_id: UUID, attempt: int, reason: str, error: InstitutionError | None
    ) -> None:
        """Record a failed attempt (`error`) or a refusal (no error); an order it leaves for a
        person (nothing more will be sent) is counted and logged once written."""
        written = await self._store.update_hold(
            hold_id, lambda r: self._retry_later(r, attempt, reason, error)
        )
        if written is None:
            return
        record, update = written
        change = update.change
        if isinstance(change, OrderProgress) and change.next_attempt_at is None:
            outcome = "refused" if error is None else "gave_up"
            metrics.ORDERS_LEFT.labels(self.kind.value, outcome).inc()
            log.warning(
                "%s of hold %s left for a person (%s)",
                self.kind.value,
                hold_id,
                outcome,
                extra={"hold_id": str(hold_id), "institution": record.hold.institution_code},
            )

    def _current(self, record: HoldRecord, attempt: int) -> bool:
        # False once another attempt took over, or this one was already recorded.
        attempts, next_at = self._progress(record)
        return attempts == attempt and next_at is not None

    def _claim(self, record: HoldRecord, now: datetime) -> HoldUpdate | None:
        attempts, due = self._progress(record)
        if not self._may_send(record) or due is None or due > now:
            return None
        timeout = timedelta(milliseconds=self._registry[record.hold.institution_code].timeout_ms)
        return HoldUpdate(
            at=now, change=OrderLeased(self.kind, attempts + 1, now + timeout + _LEASE_MARGIN)
        )

    def _retry_later(
        self, record: HoldRecord, attempt: int, reason: str, error: InstitutionError | None
    ) -> HoldUpdate | None:
        """After a failed attempt (`error`) or a refusal (no error): the next attempt, or the
        refusal or the last failure recorded for a person."""
        if not self._current(record, attempt):
            return None
        now = self._clock.now()
        institution = self._registry[record.hold.institution_code]
        delay = None if error is None else self._gateway.retry_after(institution, attempt, error)
        if delay is None:
            return self._refused(record, reason, now)
        # An open breaker means the request was never made: it costs the order no attempt.
        if isinstance(error, BreakerOpen):
            attempt -= 1
        elif attempt >= institution.retry.max_attempts:
            return self._gave_up(record, reason, now)
        return HoldUpdate(at=now, change=self._bookkeeping(attempt, now + delay, reason))
