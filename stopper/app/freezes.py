"""Formal freezes: an emergency stop becomes a freeze on the strength of a legal document.

Business rules:
- a freeze is ordered for a `stopped` hold (or, to renew it, a `frozen` one) with the legal
  document's reference; the request goes to the institution with its own idempotency key, so
  a retry never freezes twice;
- a confirmed freeze moves the hold to `frozen` with the amount frozen (at most what the stop
  held) and an expiry (about six months); a renewal extends it;
- failures are retried with backoff while the stop is still in force; a refusal is recorded
  and left for a person; a stop that lapses before the freeze is confirmed stays lapsed.
"""

from __future__ import annotations

import enum
import random
from datetime import datetime, timedelta
from uuid import UUID

from stopper import metrics
from stopper.app.background import BackgroundWork
from stopper.app.ports import Clock, DispatchStore, HoldRecord, HoldUpdate, InstitutionAdapter
from stopper.config import DeadlineSettings
from stopper.contracts.institutions import FreezeRequestV1
from stopper.domain.errors import DomainError
from stopper.domain.holds import HoldEvent, HoldState
from stopper.errors import InstitutionError
from stopper.registry import Registry

FREEZE_ACTOR = "stopper:freezes"
_LEASE_MARGIN = timedelta(seconds=2)


class FreezeOrderOutcome(enum.StrEnum):
    ORDERED = "ordered"
    NOT_ALLOWED = "not_allowed"
    UNKNOWN_HOLD = "unknown_hold"


class FreezeDesk:
    def __init__(
        self,
        store: DispatchStore,
        adapter: InstitutionAdapter,
        registry: Registry,
        clock: Clock,
        settings: DeadlineSettings,
        rng: random.Random | None = None,
    ) -> None:
        self._store = store
        self._adapter = adapter
        self._registry = registry
        self._clock = clock
        self._validity = timedelta(days=settings.freeze_validity_days)
        self._rng = rng or random.Random()
        self._in_flight = BackgroundWork("freeze attempt")

    async def order(self, hold_id: UUID, *, document_ref: str, actor: str) -> FreezeOrderOutcome:
        """Record the order and send it at once; the sweeper retries if needed."""
        now = self._clock.now()
        outcome = FreezeOrderOutcome.UNKNOWN_HOLD

        def decide(record: HoldRecord) -> HoldUpdate | None:
            nonlocal outcome
            if record.hold.state not in (HoldState.STOPPED, HoldState.FROZEN):
                outcome = FreezeOrderOutcome.NOT_ALLOWED
                return None
            outcome = FreezeOrderOutcome.ORDERED
            return HoldUpdate(
                at=now,
                fields={
                    "freeze_document_ref": document_ref,
                    "freeze_attempts": 0,
                    "freeze_next_attempt_at": now,
                    "state_reason": f"freeze ordered by {actor} under {document_ref}",
                },
            )

        await self._store.update_hold(hold_id, decide)
        if outcome is FreezeOrderOutcome.ORDERED:
            self._in_flight.start(self.attempt(hold_id), hold_id=str(hold_id))
        return outcome

    async def sweep_once(self) -> int:
        now = self._clock.now()
        due = await self._store.freezes_due(now, limit=200)
        for hold_id in due:
            self._in_flight.start(self.attempt(hold_id), hold_id=str(hold_id))
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
        record, _ = claimed
        hold = record.hold
        institution = self._registry[hold.institution_code]
        attempt = record.freeze_attempts + 1
        request = FreezeRequestV1(
            hold_id=hold.id,
            case_id=hold.case_id,
            institution_code=hold.institution_code,
            account_number=hold.account_number,
            currency=hold.currency,
            amount=hold.amount_stopped,
            legal_document_ref=record.freeze_document_ref or "",
            idempotency_key=f"stopper-freeze-{hold.id}-{record.freeze_document_ref}",
            renewal=hold.state is HoldState.FROZEN,
            requested_at=now,
        )
        try:
            answer = await self._adapter.request_freeze(institution, request)
        except InstitutionError as e:
            metrics.FREEZE_ATTEMPTS.labels(institution.code, "error").inc()
            failure, retryable = f"freeze attempt {attempt}: {e}", e.retryable
            await self._store.update_hold(
                hold_id, lambda r: self._retry_later(r, attempt, failure, retryable)
            )
            return
        metrics.FREEZE_ATTEMPTS.labels(institution.code, answer.status).inc()
        if answer.status == "rejected":
            reason = f"freeze refused by the institution: {answer.reason or 'no reason given'}"
            await self._store.update_hold(
                hold_id, lambda r: self._retry_later(r, attempt, reason, retryable=False)
            )
            return
        await self._store.update_hold(
            hold_id, lambda r: self._confirm(r, attempt, answer.amount_frozen or 0)
        )

    def _claim(self, record: HoldRecord, now: datetime) -> HoldUpdate | None:
        due = record.freeze_next_attempt_at
        if (
            record.hold.state not in (HoldState.STOPPED, HoldState.FROZEN)
            or due is None
            or due > now
        ):
            return None
        timeout = timedelta(milliseconds=self._registry[record.hold.institution_code].timeout_ms)
        return HoldUpdate(
            at=now,
            fields={
                "freeze_attempts": record.freeze_attempts + 1,
                "freeze_next_attempt_at": now + timeout + _LEASE_MARGIN,
            },
        )

    def _confirm(self, record: HoldRecord, attempt: int, amount: int) -> HoldUpdate | None:
        hold = record.hold
        if record.freeze_attempts != attempt or record.freeze_next_attempt_at is None:
            return None  # another attempt took over, or this one was already recorded
        now = self._clock.now()
        event = (
            HoldEvent.FREEZE_RENEWED
            if hold.state is HoldState.FROZEN
            else HoldEvent.FREEZE_CONFIRMED
        )
        try:
            transition = hold.apply(
                event,
                cause=f"formal freeze under {record.freeze_document_ref}",
                actor=f"institution:{hold.institution_code}",
                at=now,
                amount=min(amount, hold.amount_stopped),
            )
        except DomainError:
            return None  # the stop lapsed meanwhile: nothing to freeze
        return HoldUpdate(
            at=now,
            transitions=[transition],
            fields={
                "freeze_next_attempt_at": None,
                "freeze_expires_at": now + self._validity,
                "warnings_sent": 0,
                "state_reason": None,
            },
        )

    def _retry_later(
        self, record: HoldRecord, attempt: int, reason: str, retryable: bool
    ) -> HoldUpdate | None:
        if record.freeze_attempts != attempt or record.freeze_next_attempt_at is None:
            return None
        now = self._clock.now()
        policy = self._registry[record.hold.institution_code].retry
        if not retryable or attempt >= policy.max_attempts:
            return HoldUpdate(
                at=now,
                fields={
                    "freeze_next_attempt_at": None,
                    "state_reason": f"{reason}; a person must act",
                },
            )
        ceiling = min(policy.max_backoff_ms, policy.initial_backoff_ms * 2 ** (attempt - 1))
        delay = timedelta(milliseconds=self._rng.uniform(policy.initial_backoff_ms / 2, ceiling))
        return HoldUpdate(
            at=now, fields={"freeze_next_attempt_at": now + delay, "state_reason": reason}
        )
