"""Formal freezes: an emergency stop becomes a freeze on the strength of a legal document.

Business rules:
- a freeze is ordered for a `stopped` hold (or, to renew it, a `frozen` one) with the legal
  document's reference; the request goes to the institution with its own idempotency key, so
  a retry never freezes twice;
- a confirmed freeze moves the hold to `frozen` with the amount frozen (at most what the stop
  held) and an expiry (about six months); a renewal extends it;
- failures are retried with backoff while the stop is still in force; a refusal is recorded
  and left for a person; a stop that lapses before the freeze is confirmed stays lapsed.
The sending, retrying and leasing are `InstitutionOrders`'.
"""

from __future__ import annotations

import enum
import random
from datetime import datetime
from uuid import UUID

from stopper.app.gateway import InstitutionGateway
from stopper.app.hold_changes import FreezeOrdered, Frozen, Order
from stopper.app.orders import InstitutionOrders
from stopper.app.policies import DeadlinePolicy
from stopper.app.ports import Clock, FreezeStore, HoldRecord, HoldUpdate
from stopper.domain.errors import DomainError
from stopper.domain.holds import FREEZABLE, HoldEvent, HoldState
from stopper.domain.messages import OrderAnswer, OrderFreeze
from stopper.registry import Institution

FREEZE_ACTOR = "stopper:freezes"


class FreezeOrderOutcome(enum.StrEnum):
    ORDERED = "ordered"
    NOT_ALLOWED = "not_allowed"
    UNKNOWN_HOLD = "unknown_hold"


class FreezeDesk(InstitutionOrders):
    kind = Order.FREEZE

    def __init__(
        self,
        store: FreezeStore,
        gateway: InstitutionGateway,
        clock: Clock,
        policy: DeadlinePolicy,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(store, gateway, clock, rng)
        self._freezes = store
        self._validity = policy.freeze_validity

    async def order(
        self, hold_id: UUID, *, document_ref: str, actor: str, ordered_by: str | None = None
    ) -> FreezeOrderOutcome:
        """Record the order and send it at once; the sweeper retries if needed. `ordered_by`:
        under four eyes, who asked for the freeze that `actor` approved."""
        now = self._clock.now()
        by = actor if ordered_by is None else f"{ordered_by}, approved by {actor},"
        outcome = FreezeOrderOutcome.UNKNOWN_HOLD

        def decide(record: HoldRecord) -> HoldUpdate | None:
            nonlocal outcome
            if record.hold.state not in FREEZABLE:
                outcome = FreezeOrderOutcome.NOT_ALLOWED
                return None
            outcome = FreezeOrderOutcome.ORDERED
            return HoldUpdate(
                at=now,
                change=FreezeOrdered(
                    document_ref,
                    next_attempt_at=now,
                    reason=f"freeze ordered by {by} under {document_ref}",
                ),
            )

        await self._store.update_hold(hold_id, decide)
        if outcome is FreezeOrderOutcome.ORDERED:
            self.send_soon(hold_id)
        return outcome

    def _may_send(self, record: HoldRecord) -> bool:
        return record.hold.state in FREEZABLE

    async def _due(self, now: datetime, limit: int) -> list[UUID]:
        return await self._freezes.freezes_due(now, limit)

    async def _send(
        self, institution: Institution, record: HoldRecord, now: datetime
    ) -> OrderAnswer:
        hold = record.hold
        request = OrderFreeze(
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
        return await self._gateway.request_freeze(institution, request)

    def _done(self, record: HoldRecord, answer: OrderAnswer, now: datetime) -> HoldUpdate | None:
        hold = record.hold
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
                amount=min(answer.amount, hold.amount_stopped),
            )
        except DomainError:
            return None  # the stop lapsed meanwhile: nothing to freeze
        return HoldUpdate(
            at=now,
            transitions=[transition],
            change=Frozen(freeze_expires_at=now + self._validity),
        )

    def _refused(self, record: HoldRecord, reason: str, now: datetime) -> HoldUpdate:
        return self._gave_up(record, reason, now)
