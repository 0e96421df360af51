"""Supplements: when the money trail merges more money into a hold whose stop request already
went out, the institution is asked for the extra.

Business rules (the domain's in `stopper.domain.supplements`):
- the merge that raises the amount asked of a hold that is sent, unconfirmed, stopped or frozen
  writes, in its own transaction, one supplement for exactly what it added, and its stop request
  into the outbox (`stopper.stop-requests`, the hold's key): it leaves as soon as a worker reads
  it, as a trail hold's first request does; a hold still requested needs none (its first request
  asks for the raised amount);
- a supplement's request carries its own idempotency key (the hold's, and the merge's number)
  and says which request it adds to; every retry, redelivery, hedge and resend carries the same
  key, so the institution holds the extra once;
- it goes through the `InstitutionGateway` like a first request (slots, breaker, hedging,
  health), and is answered the same ways: stopped with the amount held (at most the
  supplement's amount), not found, rejected, or accepted with its answer owed by callback and
  asked about by status inquiry when the callback is late (never sent again unless the
  institution says it never received it); retryable failures are retried with backoff and full
  jitter within the institution's attempt budget and deadline, and one whose last attempt went
  unanswered (timed out, unreadable, or its lease ran out with no outcome recorded) is asked
  about before it is given up, as a hold is;
- what it holds is added to the hold's `amount_stopped` (a repeated or late answer counts once,
  in whatever order the first request's answer and the supplements' arrive), and money it could
  not hold is followed down the trail;
- a supplement refused, or given up on, never moves its hold: a stopped hold stays stopped for
  the money that is stopped; the hold's reason says what was not (`state_reason`, shown in the
  hold lists), the audit records it, and `stopper_supplements_total{outcome="failed"}` counts
  it, for a person to ask the institution for the rest;
- a supplement not yet sent when its hold's stop ended (lapsed, failed, being returned, another
  generation) is not sent: a re-application asks for all of it;
- the sweeper (with the dispatcher's) sends what is due: retries, lapsed leases, inquiries, and
  supplements whose outbox record nobody picked up within the first-dispatch grace.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from uuid import UUID

from stopper import metrics
from stopper.app.background import BackgroundWork
from stopper.app.gateway import InstitutionGateway
from stopper.app.policies import DispatchPolicy
from stopper.app.ports import CallbackNonce, Clock, HoldRecord
from stopper.app.status_answers import act_on_status
from stopper.app.stop_decisions import AnswerOutcome, StopDecisions
from stopper.app.supplement_decisions import SentHere, SupplementClaim, SupplementDecisions
from stopper.app.supplement_ports import (
    SupplementRecord,
    SupplementStore,
    SupplementUpdate,
    SupplementWritten,
)
from stopper.domain.messages import AnswerKind, InstitutionAnswer, StopStatus
from stopper.domain.supplements import supplement_key_for
from stopper.domain.trail import TrailPlan
from stopper.errors import InstitutionError
from stopper.registry import Institution

log = logging.getLogger(__name__)


class SupplementDesk:
    def __init__(
        self,
        store: SupplementStore,
        gateway: InstitutionGateway,
        clock: Clock,
        policy: DispatchPolicy,
        stops: StopDecisions,
        deadline_clock: Clock | None = None,
    ) -> None:
        self._store = store
        self._gateway = gateway
        self._registry = gateway.registry
        self._clock = clock
        self._policy = policy
        self._decisions = SupplementDecisions(
            gateway, clock, policy, stops, deadline_clock or clock
        )
        self._in_flight = BackgroundWork("supplement attempt")

    async def _apply(
        self,
        hold_id: UUID,
        number: int,
        decide: Callable[[HoldRecord, SupplementRecord], SupplementUpdate | None],
        nonce: CallbackNonce | None = None,
    ) -> tuple[bool, SupplementWritten | None]:
        """`SupplementStore.update_supplement`, and what the written decision comes to counted
        (and, given up, logged for a person)."""
        fresh, written = await self._store.update_supplement(hold_id, number, decide, nonce)
        if written is not None and written[2].outcome is not None:
            code = written[0].hold.institution_code
            metrics.SUPPLEMENTS.labels(code, written[2].outcome).inc()
            if written[2].outcome == "failed":
                log.warning(
                    "supplement given up: a person must act",
                    extra={"hold_id": str(hold_id), "institution": code},
                )
        return fresh, written

    # --- claims and attempts --------------------------------------------------------------

    async def claim(self, hold_id: UUID, number: int, *, first: bool) -> SupplementClaim | None:
        """Take the supplement for one attempt (or inquiry) if one is owed now. `first`: its
        stop request just came through the outbox; otherwise the sweeper found it due."""
        _, written = await self._apply(
            hold_id, number, lambda r, s: self._decisions.claim(r, s, self._clock.now(), first)
        )
        if written is None:
            return None
        record, before, update = written
        if update.supplement.next_attempt_at is None:
            return None  # closed (given up, not to be sent any more)
        after = update.supplement
        if after.attempts == before.attempts and after.inquiries <= before.inquiries:
            # Neither an attempt nor an inquiry claimed: its last attempt's lease ran out, and
            # it is asked about once its inquiry is due (`SupplementDecisions.claim`).
            return None
        return self._decisions.claim_of(record, before)

    def start(self, claim: SupplementClaim) -> None:
        """Carry out a claimed attempt in the background."""
        self._in_flight.start(self.carry_out(claim), hold_id=str(claim.request.hold_id))

    async def attempt(self, hold_id: UUID, number: int, *, first: bool) -> None:
        """Claim the supplement and make one attempt, waiting for its outcome."""
        claim = await self.claim(hold_id, number, first=first)
        if claim is not None:
            await self.carry_out(claim)

    async def carry_out(self, claim: SupplementClaim) -> None:
        request = claim.request
        institution = self._registry[request.institution_code]
        if claim.inquiry:
            await self._inquire(claim)
            return
        try:
            answer = await self._gateway.request_stop(institution, request)
        except InstitutionError as e:
            error = e
            await self._apply(
                request.hold_id,
                claim.number,
                lambda r, s: self._decisions.retry_or_give_up(r, s, claim, error),
            )
            return
        if answer.kind is AnswerKind.ACCEPTED:
            _, written = await self._apply(
                request.hold_id, claim.number, lambda r, s: self._decisions.accepted(r, s, claim)
            )
            if written is not None:
                metrics.SUPPLEMENTS.labels(institution.code, "accepted").inc()
            return
        await self.record_answer(
            request.hold_id, claim.number, answer, actor=f"institution:{institution.code}"
        )

    async def _inquire(self, claim: SupplementClaim) -> None:
        """Ask the institution what became of a supplement it accepted (or left unanswered), and
        act on it."""
        request = claim.request
        institution = self._registry[request.institution_code]
        try:
            status = await self._gateway.stop_status(institution, request.idempotency_key)
        except InstitutionError as e:
            await self._ask_later(claim, f"status inquiry {claim.inquiry}: {e}")
            return
        await self.apply_status(
            status,
            request.hold_id,
            claim.number,
            institution,
            via="status inquiry",
            on_pending=lambda: self._ask_later(claim, None),
        )

    async def apply_status(
        self,
        status: StopStatus,
        hold_id: UUID,
        number: int,
        institution: Institution,
        *,
        via: str,
        on_pending: Callable[[], Awaitable[None]] | None = None,
    ) -> str:
        """Act on what an institution's record says of a supplement (a status inquiry, or
        reconciliation), by the ladder of `act_on_status`, as `Dispatcher.apply_status` does
        for a first request: `unknown` sends an accepted supplement again."""

        async def resend() -> bool:
            _, resent = await self._apply(
                hold_id, number, lambda r, s: self._decisions.resend(r, s)
            )
            if resent is None or resent[2].outcome == "failed":  # none of its attempts reached it
                return False
            await self.attempt(hold_id, number, first=False)
            return True

        return await act_on_status(
            status,
            hold_id,
            supplement_key_for(hold_id, number),
            institution.code,
            record_answer=lambda answer: self.record_answer(
                hold_id, number, answer, actor=f"institution:{institution.code}", via=via
            ),
            resend=resend,
            on_pending=on_pending,
        )

    async def _ask_later(self, claim: SupplementClaim, why: str | None) -> None:
        institution = self._registry[claim.request.institution_code]
        await self._apply(
            claim.request.hold_id,
            claim.number,
            lambda _, s: self._decisions.next_inquiry(s, claim, why, institution),
        )

    # --- answers --------------------------------------------------------------------------

    async def record_answer(
        self,
        hold_id: UUID,
        number: int,
        answer: InstitutionAnswer,
        *,
        actor: str,
        via: str = "institution answer",
        sent_here: SentHere | None = None,
        nonce: CallbackNonce | None = None,
    ) -> AnswerOutcome:
        """Apply an institution's final answer to a supplement (at once, by callback with its
        `nonce`, or found by a status inquiry); a repeat changes nothing. `sent_here` says
        whether the answering institution was sent this supplement (checked on the locked
        rows)."""
        now = self._clock.now()
        outcome = AnswerOutcome.UNKNOWN_HOLD
        plans: list[TrailPlan] = []

        def decide(record: HoldRecord, s: SupplementRecord) -> SupplementUpdate | None:
            nonlocal outcome
            outcome, update = self._decisions.answer(
                record, s, answer, actor=actor, via=via, now=now, sent_here=sent_here, plans=plans
            )
            return update

        fresh, written = await self._apply(hold_id, number, decide, nonce)
        if not fresh:
            return AnswerOutcome.REPLAYED
        if written is not None:
            hold = written[0].hold
            metrics.SUPPLEMENTS.labels(hold.institution_code, answer.kind.value).inc()
            if answer.kind is AnswerKind.STOPPED:
                held = written[2].supplement.supplement.amount_held
                metrics.AMOUNT_STOPPED.labels(hold.currency).inc(held / 100)
        for plan in plans[-1:]:  # the plan of the attempt that committed
            for edge in plan.edges:
                metrics.TRAIL_EDGES.labels(edge.outcome.value).inc()
            for new in plan.new_holds:
                metrics.TRAIL_HOLDS.labels(str(new.layer)).inc()
        return outcome

    # --- the sweeper ----------------------------------------------------------------------

    async def sweep_once(self) -> int:
        """Attempt every supplement that is due; returns how many were looked at."""
        now = self._clock.now()
        grace = self._policy.first_dispatch_grace
        due = await self._store.supplements_due(now, now - grace, limit=200)
        claims = await asyncio.gather(*(self.claim(h, n, first=False) for h, n in due))
        for claim in claims:
            if claim is not None:
                self.start(claim)
        return len(due)

    async def claim_requested(self, requests: Sequence[tuple[UUID, int]]) -> None:
        """Claim and start the supplements (hold, number) whose stop requests came through the
        outbox; one there twice (a redelivery) is claimed once."""
        claims = await asyncio.gather(
            *(self.claim(h, n, first=True) for h, n in dict.fromkeys(requests))
        )
        for claim in claims:
            if claim is not None:
                self.start(claim)

    def in_flight(self) -> int:
        return len(self._in_flight)

    async def wait_idle(self) -> None:
        await self._in_flight.wait_idle()

    async def close(self) -> None:
        await self._in_flight.close()
