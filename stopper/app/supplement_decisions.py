"""The decisions of a supplement's requests: what each step changes on the supplement and its
hold. Pure functions of the two as stored (the hold locked while they decide), the institution,
the policy and the time, as `stop_decisions` are for a hold's first request; `SupplementDesk`
(in `supplements`) carries them out. The business rules are `supplements`'.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from stopper.app.gateway import InstitutionGateway
from stopper.app.hold_changes import HoldChange, ReasonShown
from stopper.app.policies import DispatchPolicy
from stopper.app.ports import Clock, HoldRecord, HoldUpdate
from stopper.app.stop_decisions import (
    DISPATCHER,
    LEASE_MARGIN,
    AnswerOutcome,
    StopDecisions,
    lease_ran_out,
    may_have_acted,
    no_attempt_left,
    no_later_than,
)
from stopper.app.supplement_ports import SupplementRecord, SupplementUpdate
from stopper.domain.errors import DomainError
from stopper.domain.holds import (
    SUPPLEMENT_ANSWERABLE,
    SUPPLEMENTABLE,
    Hold,
    HoldEvent,
    HoldState,
    Transition,
    leads_to,
)
from stopper.domain.messages import AnswerKind, InstitutionAnswer, RequestStop
from stopper.domain.supplements import Supplement
from stopper.domain.trail import TrailPlan
from stopper.errors import BreakerOpen, InstitutionError
from stopper.registry import Institution

_ANSWER_EVENTS = {
    AnswerKind.STOPPED: HoldEvent.STOP_CONFIRMED,
    AnswerKind.NOT_FOUND: HoldEvent.NOT_FOUND,
    AnswerKind.REJECTED: HoldEvent.REJECTED,
}
# A supplement with something owed: its request (not sent yet, or awaiting its answer).
_OWED = frozenset({HoldState.REQUESTED, HoldState.SENT, HoldState.UNCONFIRMED})


@dataclass(frozen=True, slots=True)
class SupplementClaim:
    """One attempt at a supplement's request (or, `inquiry` > 0, the n-th status inquiry about
    one the institution accepted), under a lease until `lease_until`."""

    request: RequestStop
    number: int
    attempt: int
    lease_until: datetime | None
    inquiry: int = 0


SentHere = Callable[[HoldRecord, SupplementRecord], bool]


class SupplementDecisions:
    def __init__(
        self,
        gateway: InstitutionGateway,
        clock: Clock,
        policy: DispatchPolicy,
        stops: StopDecisions,
        deadline_clock: Clock,
    ) -> None:
        self._gateway = gateway
        self._registry = gateway.registry
        self._clock = clock
        self._policy = policy
        self._stops = stops
        self._deadline_clock = deadline_clock

    # --- claims ---------------------------------------------------------------------------

    def claim(
        self, record: HoldRecord, s: SupplementRecord, now: datetime, first: bool
    ) -> SupplementUpdate | None:
        """The next attempt (or inquiry) at the supplement, if one is due: `first`, its stop
        request just came through the outbox; otherwise the sweeper found it due. A supplement
        no longer to be sent is closed instead (`_closed`)."""
        sup = s.supplement
        institution = self._registry.get(record.hold.institution_code)
        if institution is None or sup.state not in _OWED:
            return None
        closed = self._closed(record, s, now)
        if closed is not None:
            return closed
        due = s.next_attempt_at is None or s.next_attempt_at <= now
        if sup.state is HoldState.UNCONFIRMED:
            return None if first or not due else self._claim_inquiry(record, s, institution, now)
        if sup.state is HoldState.REQUESTED:
            if not first and not due:
                return None
        elif first or not due:  # sent: a retry, or a lapsed lease, once due
            return None
        # As for a hold's first request (`StopDecisions.claim`): a retry that fell due before
        # the deadline is made when Stopper reaches it late, and a supplement due with no
        # attempt left is a lease that ran out (the process making the last attempt died
        # before recording its outcome): the institution may hold the extra, so it is asked.
        deadline = s.dispatch_deadline_at or now + timedelta(seconds=institution.retry.deadline_s)
        if no_attempt_left(s.attempts, s.next_attempt_at, deadline, institution, now):
            if sup.state is HoldState.SENT:
                return self._unanswered(record, s, institution, lease_ran_out(s.attempts), now)
            why = f"gave up after {s.attempts} attempts ({s.state_reason or 'no answer'})"
            return self._give_up(record, s, institution, why, now)
        transitions = []
        if sup.state is HoldState.REQUESTED:
            cause = (
                f"{sup.amount} more asked of {institution.code} (money merged from hold"
                f" {sup.merged_from}), key {sup.idempotency_key}"
            )
            transitions = _step(record, sup, HoldEvent.REQUEST_SENT, cause, now)
        lease = timedelta(milliseconds=institution.timeout_ms) + LEASE_MARGIN
        return SupplementUpdate(
            HoldUpdate(at=now, transitions=transitions),
            replace(
                s,
                attempts=s.attempts + 1,
                next_attempt_at=now + lease,
                dispatch_deadline_at=deadline,
                sent_at=s.sent_at or now,
            ),
            outcome="sent" if s.sent_at is None else None,
        )

    def claim_of(self, record: HoldRecord, s: SupplementRecord) -> SupplementClaim:
        """The attempt a committed claim stands for (`s` as it was before the claim)."""
        sup = s.supplement
        request = sup.request(record.hold)
        institution = self._registry[record.hold.institution_code]
        lease = timedelta(milliseconds=institution.timeout_ms) + LEASE_MARGIN
        if sup.state is HoldState.UNCONFIRMED:
            return SupplementClaim(
                request, sup.number, s.attempts, self._clock.now() + lease, s.inquiries + 1
            )
        return SupplementClaim(request, sup.number, s.attempts + 1, self._clock.now() + lease)

    def _claim_inquiry(
        self, record: HoldRecord, s: SupplementRecord, institution: Institution, now: datetime
    ) -> SupplementUpdate:
        if s.dispatch_deadline_at is not None and now >= s.dispatch_deadline_at:
            if s.accepted_at is None:
                why = (
                    f"no answer to {s.attempts} attempts, nor to {s.inquiries} status inquiries"
                    " about them"
                )
            else:
                why = (
                    f"accepted by the institution at {s.accepted_at:%Y-%m-%d %H:%M:%S}Z and never"
                    f" confirmed (asked {s.inquiries} times) before its stop would have lapsed"
                )
            return self._give_up(record, s, institution, why, now)
        lease = timedelta(milliseconds=institution.timeout_ms) + LEASE_MARGIN
        return SupplementUpdate(
            HoldUpdate(at=now),
            replace(s, inquiries=s.inquiries + 1, next_attempt_at=now + lease),
        )

    def _closed(
        self, record: HoldRecord, s: SupplementRecord, now: datetime
    ) -> SupplementUpdate | None:
        """A supplement not to be asked any more: of an older generation (the re-applied stop
        asks for everything), never sent and its hold no longer taking one (the stop lapsed,
        failed or is being returned), or sent and its hold's stop over. It is given up with the
        reason, in the hold's audit where it still counts; the hold's own reason is left be."""
        hold, sup = record.hold, s.supplement
        if not sup.counts_for(hold):
            why = "the stop was re-applied: its new request asks for all of it"
        elif sup.state is HoldState.REQUESTED and hold.state not in SUPPLEMENTABLE:
            why = f"not sent: the hold is {hold.state.value} (a re-application asks for all of it)"
        elif hold.state not in SUPPLEMENT_ANSWERABLE:
            why = f"the hold is {hold.state.value}: nothing more is asked"
        else:
            return None
        return self._given_up(record, s, why, now, shown=None)

    def _give_up(
        self,
        record: HoldRecord,
        s: SupplementRecord,
        institution: Institution,
        why: str,
        now: datetime,
    ) -> SupplementUpdate:
        """Stopper stops asking for the extra: the supplement is `failed`, the hold keeps its
        state (its own stop stands) and tells people why, and it is counted."""
        hold, sup = record.hold, s.supplement
        shown = (
            f"supplement {sup.number} ({sup.amount} more, merged from another path) not"
            f" confirmed: {why}; what is held so far ({hold.amount_stopped}) stands; a person"
            f" must ask {institution.code} for the rest"
        )
        return self._given_up(record, s, why, now, shown=shown)

    def _given_up(
        self, record: HoldRecord, s: SupplementRecord, why: str, now: datetime, shown: str | None
    ) -> SupplementUpdate:
        sup = s.supplement
        gave_up = _step(record, sup, HoldEvent.GAVE_UP, why, now)
        change: HoldChange | None = None if shown is None else ReasonShown(shown)
        return SupplementUpdate(
            HoldUpdate(at=now, transitions=gave_up, change=change),
            replace(s, next_attempt_at=None, state_reason=why),
            outcome="cancelled" if shown is None else "failed",
        )

    # --- after an attempt -----------------------------------------------------------------

    def accepted(
        self, record: HoldRecord, s: SupplementRecord, claim: SupplementClaim
    ) -> SupplementUpdate | None:
        """The institution took the supplement and owes its answer: asked about once the
        callback is overdue, until the stop would have lapsed."""
        sup = s.supplement
        if sup.state is not HoldState.SENT or s.attempts != claim.attempt:
            return None  # the callback already came, or another attempt took over
        institution = self._registry[record.hold.institution_code]
        now = self._clock.now()
        reason = f"accepted by the institution at {now:%Y-%m-%d %H:%M:%S}Z; its answer is owed"
        return SupplementUpdate(
            HoldUpdate(at=now, transitions=_step(record, sup, HoldEvent.ACCEPTED, reason, now)),
            self._owed(s, institution, now, reason),
        )

    def _owed(
        self, s: SupplementRecord, institution: Institution, now: datetime, reason: str
    ) -> SupplementRecord:
        """The institution has the supplement and owes its answer since `now`: asked about once
        the callback is overdue, given up on when the stop it asked for would have lapsed."""
        return replace(
            s,
            accepted_at=now,
            inquiries=0,
            next_attempt_at=now + timedelta(seconds=institution.callback_wait_s),
            dispatch_deadline_at=self._policy.stop_expiry.expires_at(now),
            state_reason=reason,
        )

    def next_inquiry(
        self, s: SupplementRecord, claim: SupplementClaim, why: str | None, institution: Institution
    ) -> SupplementUpdate | None:
        """After an inquiry that found no outcome: the next, twice as far off each time and no
        later than the deadline (where it is given up on). An institution that says an
        unanswered supplement is pending (`why` None) has it: its answer is owed as for one
        accepted at once."""
        if s.supplement.state is not HoldState.UNCONFIRMED or s.inquiries != claim.inquiry:
            return None
        now = self._clock.now()
        if s.accepted_at is None and why is None:
            reason = (
                f"the institution has the request (pending at status inquiry {claim.inquiry},"
                f" {now:%Y-%m-%d %H:%M:%S}Z); its answer is owed"
            )
            return SupplementUpdate(HoldUpdate(at=now), self._owed(s, institution, now, reason))
        wait_s = min(
            institution.callback_wait_s * 2 ** min(claim.inquiry, 20),
            self._policy.inquiry_max_interval.total_seconds(),
        )
        reason = f"unconfirmed after {claim.inquiry} status inquiries" + (
            f" (last: {why})" if why else ""
        )
        return SupplementUpdate(
            HoldUpdate(at=now),
            replace(
                s,
                next_attempt_at=no_later_than(
                    now + timedelta(seconds=wait_s), s.dispatch_deadline_at
                ),
                state_reason=reason,
            ),
        )

    def resend(self, record: HoldRecord, s: SupplementRecord) -> SupplementUpdate | None:
        """The institution has no record of a supplement it accepted: sent again, same key. Of
        one none of whose attempts was answered, it says that none reached it, and Stopper has
        made all it may: the supplement is given up."""
        sup = s.supplement
        if sup.state is not HoldState.UNCONFIRMED:
            return None
        institution = self._registry[record.hold.institution_code]
        now = self._clock.now()
        if s.accepted_at is None:
            why = (
                f"the institution has no record of it: none of {s.attempts} unanswered"
                " attempts reached it"
            )
            return self._give_up(record, s, institution, why, now)
        cause = "the institution has no record of it: sent again (same key)"
        return SupplementUpdate(
            HoldUpdate(at=now, transitions=_step(record, sup, HoldEvent.REQUEST_SENT, cause, now)),
            replace(
                s,
                next_attempt_at=now,
                dispatch_deadline_at=now + timedelta(seconds=institution.retry.deadline_s),
                accepted_at=None,
                state_reason=cause,
            ),
        )

    def retry_or_give_up(
        self,
        record: HoldRecord,
        s: SupplementRecord,
        claim: SupplementClaim,
        error: InstitutionError,
    ) -> SupplementUpdate | None:
        """After a failed attempt: the next one after a backoff, or (not retryable, out of
        attempts or past the deadline) giving up, or, the last attempt unanswered, asking the
        institution about it first, as for a hold's first request."""
        if s.supplement.state is not HoldState.SENT or s.attempts != claim.attempt:
            return None
        institution = self._registry[record.hold.institution_code]
        now = self._clock.now()
        reason = f"attempt {claim.attempt}: {error}"
        delay = self._gateway.retry_after(institution, claim.attempt, error)
        deadline = s.dispatch_deadline_at
        not_made = isinstance(error, BreakerOpen)  # costs no attempt, as for a hold
        out_of_budget = not not_made and claim.attempt >= institution.retry.max_attempts
        if delay is None or out_of_budget or (deadline is not None and now + delay >= deadline):
            why = "not retryable" if delay is None else "retries exhausted before the deadline"
            if delay is not None and may_have_acted(error):
                return self._unanswered(record, s, institution, f"{reason}; {why}", now)
            return self._give_up(record, s, institution, f"{reason}; {why}", now)
        attempts = s.attempts - 1 if not_made else s.attempts
        return SupplementUpdate(
            HoldUpdate(at=now),
            replace(s, attempts=attempts, next_attempt_at=now + delay, state_reason=reason),
        )

    def _unanswered(
        self,
        record: HoldRecord,
        s: SupplementRecord,
        institution: Institution,
        reason: str,
        now: datetime,
    ) -> SupplementUpdate:
        """The last attempt went unanswered and no more are to be made: the institution may have
        held the extra, so it is asked (a status inquiry) once that attempt's answer would surely
        have come, for another `deadline_s`; only then, or when it says it never received the
        supplement, is the supplement given up."""
        sup = s.supplement
        cause = f"{reason}; unanswered: the institution is asked whether it has the request"
        return SupplementUpdate(
            HoldUpdate(at=now, transitions=_step(record, sup, HoldEvent.UNANSWERED, cause, now)),
            replace(
                s,
                accepted_at=None,
                inquiries=0,
                next_attempt_at=now + timedelta(milliseconds=institution.timeout_ms),
                dispatch_deadline_at=now + timedelta(seconds=institution.retry.deadline_s),
                state_reason=cause,
            ),
        )

    # --- answers --------------------------------------------------------------------------

    def answer(
        self,
        record: HoldRecord,
        s: SupplementRecord,
        answer: InstitutionAnswer,
        *,
        actor: str,
        via: str,
        now: datetime,
        sent_here: SentHere | None,
        plans: list[TrailPlan],
    ) -> tuple[AnswerOutcome, SupplementUpdate | None]:
        """What an institution's final answer to a supplement does: the supplement is answered
        (a repeat changes nothing, a contradiction is a conflict), and, while it counts for its
        hold, the hold records it and adds what it holds to `amount_stopped`; money it could not
        hold is followed down the trail as a first answer's is. A refusal leaves the hold's own
        stop standing and tells people."""
        hold, sup = record.hold, s.supplement
        if sent_here is not None and not sent_here(record, s):
            return AnswerOutcome.NOT_SENT_HERE, None
        event = _ANSWER_EVENTS[answer.kind]
        held = None
        if answer.kind is AnswerKind.STOPPED:
            held = min(answer.amount_held or 0, sup.amount)  # never more than it asked
        if sup.state is leads_to(event) and (
            answer.kind is not AnswerKind.STOPPED or sup.amount_held == held
        ):
            return AnswerOutcome.REPEATED, None
        try:
            sup.apply(event, held)
        except DomainError:
            return AnswerOutcome.CONFLICT, None
        recorded = self._recorded(hold, sup, event, answer, actor=actor, via=via, now=now)
        change: HoldChange | None = None
        follow = None
        # An answer that comes after the supplement stopped counting for its hold (the stop
        # over, or re-applied) is kept by the supplement alone.
        if recorded is not None and held is not None and answer.onward:
            follow = self._stops.trail_follower(hold, answer, sup.amount - held, now, plans)
        elif recorded is not None and held is None:
            change = ReasonShown(
                f"supplement {sup.number} ({sup.amount} more) {answer.kind.value}"
                + (f" ({answer.reason})" if answer.reason else "")
                + f"; what is held so far ({hold.amount_stopped}) stands"
            )
        return AnswerOutcome.APPLIED, SupplementUpdate(
            HoldUpdate(
                at=now,
                transitions=[recorded] if recorded else [],
                change=change,
                follow=follow,
            ),
            replace(s, next_attempt_at=None, state_reason=answer.reason),
        )

    def _recorded(
        self,
        hold: Hold,
        sup: Supplement,
        event: HoldEvent,
        answer: InstitutionAnswer,
        *,
        actor: str,
        via: str,
        now: datetime,
    ) -> Transition | None:
        cause = f"{via}: {answer.kind.value}"
        if answer.reason:
            cause += f" ({answer.reason})"
        if answer.kind is AnswerKind.STOPPED:
            cause += f", {sup.amount_held} of {sup.amount} held"
        return sup.record_on(hold, event, cause=cause, actor=actor, at=now)


def _step(
    record: HoldRecord, sup: Supplement, event: HoldEvent, cause: str, now: datetime
) -> list[Transition]:
    """Move the supplement by the dispatcher's `event`; the hold's audit row of it, if the
    supplement still counts for the hold."""
    sup.apply(event)
    recorded = sup.record_on(record.hold, event, cause=cause, actor=DISPATCHER, at=now)
    return [recorded] if recorded is not None else []
