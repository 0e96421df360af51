"""The decisions of the fan-out: what each step of a stop request changes on the stored hold.

Every method here is a pure function of the hold as stored (locked by the store while it
decides), the institution, the dispatch policy and the time; none makes a call or a write.
`Dispatcher` (in `dispatch`) carries them out: it claims, calls the institution through the
gateway, and hands these decisions to the store. The business rules are `dispatch`'s.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from uuid import UUID

from stopper.app.gateway import InstitutionGateway
from stopper.app.hold_changes import (
    Accepted,
    AttemptClaimed,
    Backoff,
    Concluded,
    Confirmed,
    HoldChange,
    InquiryClaimed,
    NotAttempted,
    Resent,
    Unanswered,
)
from stopper.app.policies import DispatchPolicy
from stopper.app.ports import Clock, HoldRecord, HoldUpdate
from stopper.domain.errors import DomainError
from stopper.domain.holds import Hold, HoldEvent, HoldState, can, idempotency_key_for, leads_to
from stopper.domain.messages import AnswerKind, InstitutionAnswer, RequestStop
from stopper.domain.mules import is_flagged
from stopper.domain.trail import TrailNode, TrailPlan, plan_trail
from stopper.errors import BreakerOpen, InstitutionError, InstitutionTimeout, MalformedAnswer
from stopper.registry import Institution

DISPATCHER = "stopper:dispatcher"
# After a claim, the attempt owns the hold this long past its timeout; if the process dies
# mid-attempt, the sweeper takes the hold over once the lease is up.
LEASE_MARGIN = timedelta(seconds=2)

_ANSWER_EVENTS = {
    AnswerKind.STOPPED: HoldEvent.STOP_CONFIRMED,
    AnswerKind.NOT_FOUND: HoldEvent.NOT_FOUND,
    AnswerKind.REJECTED: HoldEvent.REJECTED,
}


class AnswerOutcome(enum.StrEnum):
    APPLIED = "applied"
    REPEATED = "repeated"  # the hold already says exactly this: nothing to do
    CONFLICT = "conflict"  # the hold's state does not allow this answer
    UNKNOWN_HOLD = "unknown_hold"
    NOT_SENT_HERE = "not_sent_here"  # the answering institution was never asked about it
    REPLAYED = "replayed"  # a callback whose nonce was used before: nothing decided


@dataclass(frozen=True, slots=True)
class Claim:
    request: RequestStop
    attempt: int
    first_send: bool
    report_accepted_at: datetime | None
    lease_until: datetime | None = None  # when a sweeper may take the hold over
    # > 0: not a stop request but the n-th status inquiry about one the institution accepted.
    inquiry: int = 0


class StopDecisions:
    def __init__(
        self,
        gateway: InstitutionGateway,
        clock: Clock,
        policy: DispatchPolicy,
        rng: random.Random,
        deadline_clock: Clock,
    ) -> None:
        self._gateway = gateway
        self._registry = gateway.registry
        self._clock = clock
        self._policy = policy
        self._rng = rng
        self._deadline_clock = deadline_clock

    def claim(self, record: HoldRecord, now: datetime, first: bool) -> HoldUpdate | None:
        hold = record.hold
        institution = self._registry.get(hold.institution_code)
        if institution is None:
            return None
        due = record.next_attempt_at is None or record.next_attempt_at <= now
        if hold.state is HoldState.UNCONFIRMED:
            return None if first or not due else self._claim_inquiry(record, institution, now)
        if hold.state is HoldState.REQUESTED:
            if not first and not due:
                return None
        elif hold.state is not HoldState.SENT or first or not due:
            return None
        # The deadline runs from the first attempt: a hold that waited in a backlog (consumer
        # lag, an outage of Stopper's own) is still asked for once; only an institution that
        # stays unreachable past `deadline_s` makes it `failed`. Likewise a retry that fell due
        # before the deadline is made when Stopper reaches it late (a starved process, a
        # sweeper behind): the lateness is Stopper's, not the institution's.
        deadline = record.dispatch_deadline_at or now + timedelta(
            seconds=institution.retry.deadline_s
        )
        if no_attempt_left(record.attempts, record.next_attempt_at, deadline, institution, now):
            if hold.state is HoldState.SENT:
                # Due with no attempt left is a lease that ran out: the last attempt was
                # claimed and its outcome never recorded (the process making it died). A
                # failure would have been recorded with a retry in time, and a re-send always
                # has an attempt left (`resend`). The institution may have the request.
                return self._unanswered(hold, institution, lease_ran_out(record.attempts), now)
            reason = (
                f"gave up after {record.attempts} attempts"
                f" ({record.state_reason or 'no answer'}); a person must act"
            )
            return _give_up(hold, reason, now)
        transitions = []
        if hold.state is HoldState.REQUESTED:
            transitions.append(
                hold.apply(
                    HoldEvent.REQUEST_SENT,
                    cause=f"stop request sent to {institution.code}",
                    actor=DISPATCHER,
                    at=now,
                )
            )
        lease = timedelta(milliseconds=institution.timeout_ms) + LEASE_MARGIN
        return HoldUpdate(
            at=now,
            transitions=transitions,
            change=AttemptClaimed(
                attempts=record.attempts + 1,
                next_attempt_at=now + lease,
                dispatch_deadline_at=deadline,
                sent_at=record.sent_at or now,
            ),
        )

    def _claim_inquiry(
        self, record: HoldRecord, institution: Institution, now: datetime
    ) -> HoldUpdate:
        """A status inquiry about a request the institution accepted (or left unanswered); or,
        once `dispatch_deadline_at` of the unconfirmed hold has passed (for an accepted request:
        when the stop it asked for would have lapsed), giving up."""
        hold = record.hold
        if record.dispatch_deadline_at is not None and now >= record.dispatch_deadline_at:
            if record.accepted_at is None:
                reason = (
                    f"no answer to {record.attempts} attempts, nor to {record.inquiries} status"
                    " inquiries about them; a person must act"
                )
            else:
                reason = (
                    f"accepted by the institution at {record.accepted_at:%Y-%m-%d %H:%M:%S}Z and"
                    f" never confirmed (asked {record.inquiries} times) before its stop would"
                    " have lapsed; a person must act"
                )
            return _give_up(hold, reason, now)
        lease = timedelta(milliseconds=institution.timeout_ms) + LEASE_MARGIN
        return HoldUpdate(
            at=now, change=InquiryClaimed(record.inquiries + 1, next_attempt_at=now + lease)
        )

    def claim_of(self, record: HoldRecord, lease_until: datetime | None) -> Claim:
        """The attempt a successful claim stands for (`record` is the copy before the claim)."""
        hold = record.hold
        request = hold.stop_request(record.requested_at)
        if hold.state is HoldState.UNCONFIRMED:
            return Claim(
                request,
                record.attempts,
                False,
                record.report_accepted_at,
                lease_until,
                inquiry=record.inquiries + 1,
            )
        return Claim(
            request,
            record.attempts + 1,
            record.sent_at is None,
            record.report_accepted_at,
            lease_until,
        )

    def accepted(
        self, record: HoldRecord, claim: Claim, institution: Institution
    ) -> HoldUpdate | None:
        """The institution took the request and owes its answer: the hold is `unconfirmed`, and
        is asked about (not sent again) once the callback is overdue, until its stop would have
        lapsed."""
        hold = record.hold
        if not can(hold.state, HoldEvent.ACCEPTED) or record.attempts != claim.attempt:
            return None  # the callback already came, or another attempt took over
        now = self._clock.now()
        reason = f"accepted by the institution at {now:%Y-%m-%d %H:%M:%S}Z; its answer is owed"
        transition = hold.apply(HoldEvent.ACCEPTED, cause=reason, actor=DISPATCHER, at=now)
        return HoldUpdate(
            at=now, transitions=[transition], change=self._owed(institution, now, reason)
        )

    def _owed(self, institution: Institution, now: datetime, reason: str) -> Accepted:
        """The institution has the request and owes its answer since `now`: asked about once the
        callback is overdue, given up on when the stop it asked for would have lapsed."""
        return Accepted(
            accepted_at=now,
            next_attempt_at=now + timedelta(seconds=institution.callback_wait_s),
            dispatch_deadline_at=self._policy.stop_expiry.expires_at(now),
            reason=reason,
        )

    def next_inquiry(
        self, record: HoldRecord, claim: Claim, institution: Institution, why: str | None
    ) -> HoldUpdate | None:
        """After an inquiry that found no outcome: the next one, twice as far off each time (from
        `callback_wait_s`, with jitter, at most `inquiry_max_interval_s`, and no later than the
        deadline, where it is given up on). An institution that says it has an unanswered
        request pending (`why` None) has accepted it: its answer is owed as for a request
        accepted at once."""
        if record.hold.state is not HoldState.UNCONFIRMED or record.inquiries != claim.inquiry:
            return None  # the answer came meanwhile, or another inquiry took over
        now = self._clock.now()
        if record.accepted_at is None and why is None:
            reason = (
                f"the institution has the request (pending at status inquiry {claim.inquiry},"
                f" {now:%Y-%m-%d %H:%M:%S}Z); its answer is owed"
            )
            return HoldUpdate(at=now, change=self._owed(institution, now, reason))
        wait_s = min(
            institution.callback_wait_s * 2 ** min(claim.inquiry, 20),
            self._policy.inquiry_max_interval.total_seconds(),
        ) * self._rng.uniform(0.8, 1.2)
        if record.accepted_at is None:
            reason = f"no attempt answered; unconfirmed after {claim.inquiry} status inquiries"
        else:
            reason = (
                f"accepted by the institution at {record.accepted_at:%Y-%m-%d %H:%M:%S}Z;"
                f" unconfirmed after {claim.inquiry} status inquiries"
            )
        reason += f" (last: {why})" if why else ""
        following = no_later_than(now + timedelta(seconds=wait_s), record.dispatch_deadline_at)
        return HoldUpdate(at=now, change=Backoff(following, reason))

    def resend(self, record: HoldRecord, key: str, institution: Institution) -> HoldUpdate | None:
        """The institution has no record of a request it accepted (or that Stopper believes it
        accepted): send it again, same key, with a fresh deadline, if an attempt is left. Of a
        request none of whose attempts was answered, it says that none reached it, and Stopper
        has made all it may: the hold fails; so it does when no attempt is left."""
        hold = record.hold
        if hold.state is not HoldState.UNCONFIRMED:
            return None
        if idempotency_key_for(hold.id, hold.reapplications) != key:
            return None
        now = self._clock.now()
        if record.accepted_at is None:
            reason = (
                f"the institution has no record of the request: none of {record.attempts}"
                " unanswered attempts reached it; a person must act"
            )
            return _give_up(hold, reason, now)
        if record.attempts >= institution.retry.max_attempts:
            reason = (
                f"the institution has no record of the request it accepted, and all"
                f" {record.attempts} attempts are made; a person must act"
            )
            return _give_up(hold, reason, now)
        cause = "the institution has no record of the request: sent again (same key)"
        transition = hold.apply(HoldEvent.REQUEST_SENT, cause=cause, actor=DISPATCHER, at=now)
        return HoldUpdate(
            at=now,
            transitions=[transition],
            change=Resent(
                next_attempt_at=now,
                dispatch_deadline_at=now + timedelta(seconds=institution.retry.deadline_s),
                reason=cause,
            ),
        )

    def retry_or_give_up(
        self, record: HoldRecord, claim: Claim, institution: Institution, error: InstitutionError
    ) -> HoldUpdate | None:
        hold = record.hold
        if hold.state is not HoldState.SENT or record.attempts != claim.attempt:
            return None
        now = self._clock.now()
        reason = f"attempt {claim.attempt}: {error}"
        delay = self._gateway.retry_after(institution, claim.attempt, error)
        deadline = record.dispatch_deadline_at
        # An open breaker means the request was not even made: it costs the hold no attempt of
        # its budget (a herd of holds waiting on a half-open breaker would otherwise use theirs
        # up without reaching the institution); only the deadline bounds it.
        not_made = isinstance(error, BreakerOpen)
        out_of_budget = not not_made and claim.attempt >= institution.retry.max_attempts
        if delay is None or out_of_budget or (deadline is not None and now + delay >= deadline):
            why = "not retryable" if delay is None else "retries exhausted before the deadline"
            if delay is not None and may_have_acted(error):
                return self._unanswered(hold, institution, f"{reason}; {why}", now)
            cause = f"{reason}; {why}; a person must act"
            return _give_up(hold, cause, now)
        if not_made:
            return HoldUpdate(at=now, change=NotAttempted(record.attempts - 1, now + delay, reason))
        return HoldUpdate(at=now, change=Backoff(now + delay, reason))

    def _unanswered(
        self, hold: Hold, institution: Institution, reason: str, now: datetime
    ) -> HoldUpdate:
        """The last attempt went unanswered (`may_have_acted`) and no more are to be made: the
        institution may have carried the request out, so the hold is `unconfirmed` and the
        institution is asked about it (a status inquiry) once the last attempt's answer would
        surely have come, until another `deadline_s` has passed; only then, or when the
        institution says it never received the request, does the hold fail."""
        cause = f"{reason}; unanswered: the institution is asked whether it has the request"
        transition = hold.apply(HoldEvent.UNANSWERED, cause=cause, actor=DISPATCHER, at=now)
        return HoldUpdate(
            at=now,
            transitions=[transition],
            change=Unanswered(
                next_attempt_at=now + timedelta(milliseconds=institution.timeout_ms),
                dispatch_deadline_at=now + timedelta(seconds=institution.retry.deadline_s),
                reason=cause,
            ),
        )

    def answer(
        self,
        record: HoldRecord,
        answer: InstitutionAnswer,
        *,
        actor: str,
        via: str,
        now: datetime,
        sent_here: Callable[[HoldRecord], bool] | None,
        plans: list[TrailPlan],
    ) -> tuple[AnswerOutcome, HoldUpdate | None]:
        """What an institution's final answer does to the hold (see `Dispatcher.record_answer`),
        and the change it makes (None: nothing to write). The trail it follows, if any, is
        planned in the change's transaction and appended to `plans`."""
        hold = record.hold
        if sent_here is not None and not sent_here(record):
            return AnswerOutcome.NOT_SENT_HERE, None
        amount = None
        if answer.kind is AnswerKind.STOPPED:
            # An institution can only hold what was asked; a larger figure is capped. The first
            # request asked `amount_first_request`: what supplements hold is counted apart.
            amount = min(answer.amount_held or 0, hold.amount_first_request)
        if hold.state is leads_to(_ANSWER_EVENTS[answer.kind]) and (
            answer.kind is not AnswerKind.STOPPED or hold.amount_stopped_by_first == amount
        ):
            return AnswerOutcome.REPEATED, None
        cause = f"{via}: {answer.kind.value}"
        if answer.reason:
            cause += f" ({answer.reason})"
        try:
            transition = hold.apply(
                _ANSWER_EVENTS[answer.kind], cause=cause, actor=actor, at=now, amount=amount
            )
        except DomainError:
            return AnswerOutcome.CONFLICT, None
        change: HoldChange = Concluded(answer.reason)
        follow = None
        if answer.kind is AnswerKind.STOPPED:
            # The lapse is business time: an accelerated run moves it, timeouts stay real.
            expires_at = self._policy.stop_expiry.expires_at(self._deadline_clock.now())
            change = Confirmed(answer.reason, confirmed_at=now, stop_expires_at=expires_at)
            if answer.onward:
                moved_on = hold.amount_first_request - hold.amount_stopped_by_first
                follow = self.trail_follower(hold, answer, moved_on, now, plans)
        return AnswerOutcome.APPLIED, HoldUpdate(
            at=now, transitions=[transition], change=change, follow=follow
        )

    def trail_follower(
        self,
        hold: Hold,
        answer: InstitutionAnswer,
        moved_on: int,
        now: datetime,
        plans: list[TrailPlan],
    ) -> Callable[[Sequence[TrailNode]], TrailPlan]:
        """Follow `answer`'s onward transfers from `hold`, at most `moved_on` in all (what the
        request answered could not hold: its own amount asked minus what it holds)."""

        def follow(case_nodes: Sequence[TrailNode]) -> TrailPlan:
            parent = next(n for n in case_nodes if n.hold_id == hold.id)
            plan = plan_trail(
                parent=parent,
                moved_on=moved_on,
                onward=answer.onward,
                case_id=hold.case_id,
                case_nodes=case_nodes,
                known_institutions=self._registry,
                max_depth=self._policy.trail_max_depth,
                at=now,
            )
            plans.append(plan)
            return plan

        return follow


def mules_first(claims: Iterable[Claim], mule_cases: Mapping[UUID, int]) -> list[Claim]:
    """The claims, each stop request saying in how many cases its account is named when it is
    a known mule (`mule_cases`, by hold), those first: they are started first and take their
    institution's next free slot before the others. Otherwise in the order given."""
    marked = []
    for claim in claims:
        cases = None if claim.inquiry else mule_cases.get(claim.request.hold_id)
        if cases is not None:
            claim = replace(claim, request=replace(claim.request, mule_cases=cases))
        marked.append(claim)
    return sorted(marked, key=lambda c: not is_flagged(c.request.mule_cases))


def no_later_than(at: datetime, deadline: datetime | None) -> datetime:
    """`at`, or the deadline if that comes first: the next inquiry about an unconfirmed request
    is made by its deadline at the latest, where it is given up on if still unanswered."""
    return at if deadline is None else min(at, deadline)


def no_attempt_left(
    attempts: int,
    next_attempt_at: datetime | None,
    deadline: datetime,
    institution: Institution,
    now: datetime,
) -> bool:
    """Whether a request due now (a hold's or a supplement's) is out of its budget: every
    attempt made, or past the deadline, unless it fell due before it (then the lateness is
    Stopper's, and the attempt is made)."""
    fell_due_in_time = next_attempt_at is not None and next_attempt_at < deadline
    late = now >= deadline and not fell_due_in_time
    return late or attempts >= institution.retry.max_attempts


def lease_ran_out(attempts: int) -> str:
    """Why a request whose last attempt's lease ran out is unanswered."""
    return f"attempt {attempts}: no outcome recorded before its lease ran out; no attempt left"


def may_have_acted(error: InstitutionError) -> bool:
    """Whether the institution may have carried out a request whose last attempt ended in
    `error`: a timeout or an unreadable answer leaves it open. A refusal, an outage it answered
    (a 5xx, a refused connection) or an open breaker (an outage Stopper saw often enough to stop
    calling: a person should know of it now) does not."""
    return isinstance(error, InstitutionTimeout | MalformedAnswer)


def _give_up(hold: Hold, reason: str, now: datetime) -> HoldUpdate:
    """Stopper stops trying: the hold is `failed`, for a person to act on, and says why."""
    gave_up = hold.apply(HoldEvent.GAVE_UP, cause=reason, actor=DISPATCHER, at=now)
    return HoldUpdate(at=now, transitions=[gave_up], change=Concluded(reason))
