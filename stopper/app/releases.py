"""Releases: a hold is lifted when its report is withdrawn or its account cleared.

Business rules:
- a release is asked for one hold (`release`: the account cleared) or for every hold of a case
  (`withdraw`: the report withdrawn), with who asks and why; the audit names both;
- which states may be released, and how, is the hold table's (`RELEASABLE`, `release_event`):
  a hold whose first stop request never left is released at once, without asking its
  institution (nothing is there); every other one becomes `releasing` and a release goes to
  its institution with its own idempotency key (one per hold), so a retry never releases twice.
  A stop request still under way is not left to stop the money afterwards: from `releasing` on
  nothing more is sent for its stop, an answer to it no longer applies, and the release tells
  the institution to carry out none of the hold's requests still to reach it;
- the institution's confirmation moves the hold to `released` (the agency is told:
  `hold_released`); failures are retried with backoff through the institution's gateway like a
  stop; a refusal, or attempts that run out, leave the hold `releasing` with the reason for a
  person, as a freeze gives up, and asking again sends the very same request;
- a hold already releasing is not ordered twice; a hold whose funds are on their way to the
  victims (`returning`) or whose stop is over (a terminal state) is not released, and the answer
  says why;
- holds the money trail adds to a case while it is withdrawn are released too.
The sending, retrying and leasing are `InstitutionOrders'`.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from stopper import metrics
from stopper.app.gateway import InstitutionGateway
from stopper.app.hold_changes import Order, ReleaseOrdered
from stopper.app.orders import InstitutionOrders
from stopper.app.ports import Clock, HoldDecision, HoldRecord, HoldUpdate, ReleaseStore
from stopper.domain.holds import RELEASABLE, HoldEvent, HoldState, release_event
from stopper.domain.messages import OrderAnswer, OrderRelease
from stopper.registry import Institution

# How often a withdrawal looks again for holds the trail added to the case meanwhile.
_WITHDRAW_PASSES = 5


class ReleaseGround(enum.StrEnum):
    REPORT_WITHDRAWN = "report_withdrawn"
    ACCOUNT_CLEARED = "account_cleared"


class ReleaseOutcome(enum.StrEnum):
    ORDERED = "ordered"  # the hold is releasing; the release goes to its institution
    CANCELLED = "cancelled"  # released at once: its stop request had never left
    ALREADY_ORDERED = "already_ordered"  # releasing already, its release under way
    RESENT = "resent"  # releasing, given up earlier: the same release sent again
    NOT_ALLOWED = "not_allowed"
    UNKNOWN_HOLD = "unknown_hold"


# Why a state is not released, as the answer says it.
_NOT_RELEASED = {
    HoldState.RETURNING: "its funds are on their way to the victims",
    HoldState.RETURNED: "its funds were returned to the victims",
    HoldState.RELEASED: "it is released already",
    HoldState.NOT_FOUND: "its institution found no such account: nothing is held",
    HoldState.REJECTED: "its institution rejected the stop: nothing is held",
}


@dataclass(frozen=True, slots=True)
class HoldRelease:
    """What a release did to one hold, and (not allowed) why not."""

    hold_id: UUID
    outcome: ReleaseOutcome
    state: HoldState | None  # the hold's state afterwards (None: no such hold)
    reason: str | None = None


@dataclass(slots=True)
class Withdrawal:
    """What withdrawing a case did to each of its holds."""

    case_id: UUID
    holds: list[HoldRelease] = field(default_factory=list)

    @property
    def released(self) -> list[HoldRelease]:
        """The holds released, or on their way to it."""
        return [h for h in self.holds if h.outcome is not ReleaseOutcome.NOT_ALLOWED]

    @property
    def skipped(self) -> list[HoldRelease]:
        return [h for h in self.holds if h.outcome is ReleaseOutcome.NOT_ALLOWED]


class ReleaseDesk(InstitutionOrders):
    kind = Order.RELEASE

    def __init__(
        self,
        store: ReleaseStore,
        gateway: InstitutionGateway,
        clock: Clock,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(store, gateway, clock, rng)
        self._releases = store

    async def release(
        self, hold_id: UUID, *, ground: ReleaseGround, reason: str, actor: str
    ) -> HoldRelease:
        """Release one hold (recorded, then sent at once; the sweeper retries if needed)."""
        results = await self._release_all([hold_id], ground, reason, actor)
        return results.get(hold_id, HoldRelease(hold_id, ReleaseOutcome.UNKNOWN_HOLD, None))

    async def withdraw(self, case_id: UUID, *, reason: str, actor: str) -> Withdrawal | None:
        """Release every hold of the case, in one transaction per pass (a second pass for holds
        the trail added meanwhile); None if there is no such case."""
        ids = await self._releases.case_hold_ids(case_id)
        if ids is None:
            return None
        done: dict[UUID, HoldRelease] = {}
        for _ in range(_WITHDRAW_PASSES):
            new = [hold_id for hold_id in ids if hold_id not in done]
            if not new:
                break
            done.update(await self._release_all(new, ReleaseGround.REPORT_WITHDRAWN, reason, actor))
            ids = await self._releases.case_hold_ids(case_id) or []
        return Withdrawal(case_id, sorted(done.values(), key=lambda h: str(h.hold_id)))

    async def _release_all(
        self, hold_ids: Sequence[UUID], ground: ReleaseGround, reason: str, actor: str
    ) -> dict[UUID, HoldRelease]:
        now = self._clock.now()
        results: dict[UUID, HoldRelease] = {}

        def deciding(hold_id: UUID) -> HoldDecision:
            def decide(record: HoldRecord) -> HoldUpdate | None:
                result, update = self._decide(record, ground, reason, actor, now)
                results[hold_id] = result
                return update

            return decide

        await self._releases.update_holds({hold_id: deciding(hold_id) for hold_id in hold_ids})
        for result in results.values():
            metrics.RELEASES.labels(ground.value, result.outcome.value).inc()
            if result.outcome in (ReleaseOutcome.ORDERED, ReleaseOutcome.RESENT):
                self.send_soon(result.hold_id)
        return results

    def _decide(
        self,
        record: HoldRecord,
        ground: ReleaseGround,
        reason: str,
        actor: str,
        now: datetime,
    ) -> tuple[HoldRelease, HoldUpdate | None]:
        hold = record.hold
        if hold.state is HoldState.RELEASING:
            if record.release_next_attempt_at is not None:
                return HoldRelease(hold.id, ReleaseOutcome.ALREADY_ORDERED, hold.state), None
            again = ReleaseOrdered(
                record.release_ground or ground.value,
                next_attempt_at=now,
                reason=f"release sent again by {actor}: {reason}",
            )
            return HoldRelease(hold.id, ReleaseOutcome.RESENT, hold.state), HoldUpdate(
                at=now, change=again
            )
        if hold.state not in RELEASABLE:
            why = _NOT_RELEASED.get(hold.state, "its state does not allow it")
            return HoldRelease(
                hold.id, ReleaseOutcome.NOT_ALLOWED, hold.state, f"the hold is {hold.state}: {why}"
            ), None
        event = release_event(hold)
        cancelled = event is HoldEvent.REQUEST_CANCELLED
        cause = f"{ground.value.replace('_', ' ')}: {reason}"
        if cancelled:
            cause += " (no stop request had left: nothing to release at the institution)"
        transition = hold.apply(event, cause=cause, actor=actor, at=now)
        update = HoldUpdate(
            at=now,
            transitions=[transition],
            change=ReleaseOrdered(
                ground.value,
                next_attempt_at=None if cancelled else now,
                reason=f"release ordered by {actor}: {reason}",
            ),
        )
        outcome = ReleaseOutcome.CANCELLED if cancelled else ReleaseOutcome.ORDERED
        return HoldRelease(hold.id, outcome, hold.state), update

    # InstitutionOrders

    def _may_send(self, record: HoldRecord) -> bool:
        return record.hold.state is HoldState.RELEASING

    async def _due(self, now: datetime, limit: int) -> list[UUID]:
        return await self._releases.releases_due(now, limit)

    async def _send(
        self, institution: Institution, record: HoldRecord, now: datetime
    ) -> OrderAnswer:
        hold = record.hold
        request = OrderRelease(
            hold_id=hold.id,
            case_id=hold.case_id,
            institution_code=hold.institution_code,
            account_number=hold.account_number,
            currency=hold.currency,
            ground=record.release_ground or ReleaseGround.ACCOUNT_CLEARED.value,
            generation=hold.reapplications,
            idempotency_key=f"stopper-release-{hold.id}",
            requested_at=now,
        )
        return await self._gateway.request_release(institution, request)

    def _done(self, record: HoldRecord, answer: OrderAnswer, now: datetime) -> HoldUpdate | None:
        hold = record.hold
        if hold.state is not HoldState.RELEASING:
            return None
        freed = f"{answer.amount} no longer held" if answer.amount else "nothing was held"
        transition = hold.apply(
            HoldEvent.RELEASE_CONFIRMED,
            cause=f"released at the institution ({record.release_ground}): {freed}",
            actor=f"institution:{hold.institution_code}",
            at=now,
        )
        return HoldUpdate(
            at=now,
            transitions=[transition],
            change=self._bookkeeping(record.release_attempts, None, answer.reason),
        )

    def _refused(self, record: HoldRecord, reason: str, now: datetime) -> HoldUpdate:
        return self._gave_up(record, reason, now)
