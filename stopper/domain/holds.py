"""The hold state machine.

Theory of operation
-------------------
A *hold* is one account's stop for one case. It is born ``requested``: a stop request is owed
to the account's institution. Everything that happens to it afterwards is an *event*
(`HoldEvent`); the table `TRANSITIONS` below is the single place that says which event may
move a hold from which state to which. Nothing else in Stopper changes `Hold.state`.

In short (the table is the authority)::

    requested --request_sent--> sent --stop_confirmed--> stopped --freeze_confirmed--> frozen
    sent      --not_found / rejected--> not_found / rejected
    sent      --accepted--> unconfirmed (the institution took it; its answer is owed)
    sent      --unanswered--> unconfirmed (the last attempt unanswered: the institution is asked)
    unconfirmed --stop_confirmed / not_found / rejected--> stopped / not_found / rejected
    unconfirmed --request_sent--> sent (it says it never received the request: sent again)
    requested, sent, unconfirmed --gave_up--> failed
    stopped, frozen --lapsed--> expired --reapplied--> requested
    stopped --stop_lifted--> expired (re-verification: the institution no longer holds it)
    stopped --reapplied--> requested (an expiring stop renewed before it lapses)
    frozen --freeze_renewed--> frozen (a new legal document extends the freeze)
    frozen --return_started--> returning --return_confirmed--> returned
    returning --return_refused--> frozen (the institution refused: the funds stay frozen)
    requested, sent, unconfirmed, failed, stopped, frozen, expired
              --release_ordered--> releasing --release_confirmed--> released
    requested --request_cancelled--> released (lifted before any request left)
    any state but a terminal one or releasing --merged--> the same state (the trail reached
              it again)
    sent, unconfirmed, stopped, frozen --supplement_sent--> the same state (the extra asked)
    the states a stop may still be in (not releasing) --supplement_accepted / _unanswered /
        _stopped / _refused / _failed--> the same state (the supplement's answer, its last
        attempt unanswered, or Stopper giving up)

Rules the table encodes:

* ``unconfirmed`` is not ``failed``: the institution accepted the request and owes its answer.
  Stopper asks about it (a status inquiry) rather than sending it again, and gives up on it
  only when its stop would have lapsed unconfirmed.
* No answer is not a refusal: a request whose last attempt went unanswered (it timed out, or
  its answer could not be read) may have been carried out, so the hold is ``unconfirmed`` too,
  and the institution is asked about it before Stopper gives up on it.

* A business answer (``not_found``, ``rejected``) is final for that request.
* ``failed`` means a person must act. An answer that arrives late for a failed hold is still the
  truth about the funds, so a failed hold accepts ``stop_confirmed``, ``not_found`` and
  ``rejected``. It is not re-applied: re-application renews a stop that was in force
  (``stopped``, or lapsed to ``expired``); a failed request was never answered.
* An emergency stop lapses (``expired``) unless it became ``frozen`` first; an expired stop may
  be re-applied (the limit on how often is the caller's rule, kept in `Hold.reapplications`).
* A *merge*: money moving on along another path of the case's trail reached an account that
  already has a hold, and the hold asks for that much more (``amount_asked`` rises, the state
  stays). It is recorded like any other event. A hold whose stop is over (a terminal state) is
  not asked for more; an expired one is, for the day it is re-applied. What the institution is
  sent depends on where the hold is (`merge_asks`): a ``requested`` hold's first request is not
  out yet and asks for the raised amount itself; once it is out (``sent``, ``unconfirmed``) or
  its stop is in force (``stopped``, ``frozen``: the states that allow ``supplement_sent``), the
  extra is a *supplement* of its own (`stopper.domain.supplements`), whose steps the hold's
  audit records as same-state events; elsewhere (``failed``, ``expired``, ``returning``) nothing
  is sent: a re-application asks for all of it.
* Amounts with supplements: `amount_first_request` is what the first request of the current
  generation asks (fixed once it is out: a retry never asks for more under the same key);
  `amount_stopped` is everything held, the first request's answer plus each supplement's
  (`amount_stopped_by_supplements`), so answers add up in whatever order they come, and never
  above `amount_asked`.
* A stop the institution no longer holds (a weekly re-verification asked it, and it answered
  that the stop was lifted, that it has no record of the request, or that the account is not
  there) is over as surely as a lapsed one: ``stop_lifted`` moves a ``stopped`` hold to
  ``expired``, from where a person may re-apply it (a new request, a new key) or release it.
  Stopper never says ``stopped`` for money the institution has let go.
* ``returned``, ``rejected`` and ``not_found`` are terminal.
* A *release* lifts a hold (the report was withdrawn, the account cleared). It is ordered for a
  hold whose stop is in force (``stopped``, ``frozen``: a withdrawn report takes away the
  ground of the freeze too) or may be: ``expired`` (Stopper's lapse is its own reckoning of the
  deadline; the institution may count it otherwise), ``failed`` (the institution may have
  acted without Stopper hearing of it), and a request still owed (``sent``, ``unconfirmed``,
  or ``requested`` again after a re-application, whose earlier stop was at the institution):
  a request under way must not be left to stop the money after a withdrawal, so the
  institution is told to lift the hold's stop and not to carry out its requests still to
  come. The hold is ``releasing`` until the institution confirms (``released``); meanwhile it
  takes no stop answer, no lapse, no freeze and no merge (the account is being let go), and
  nothing more is sent for its stop. A refusal, or attempts that run out, leave it
  ``releasing`` with the reason for a person (the release's bookkeeping, as a freeze's).
* A hold whose first request never left (``requested``, never re-applied) has nothing at the
  institution: ``request_cancelled`` releases it at once, without asking (`release_event`).
* ``returning`` is not released: the money is on its way to the victims (a refused return
  leaves it ``frozen``, which may be released). ``released`` is terminal.

An illegal event raises `IllegalTransition` and leaves the hold exactly as it was.

Every "may it?" asked elsewhere is derived from the table, never listed again: `can(state,
event)`, `states_allowing(*events)`, `leads_to(event)`, and the sets `IN_PLAY` (work is left in
the hold), `AWAITING_ANSWER` (a request went out, its answer is owed), `ANSWERABLE` (an
institution's answer may apply), `FREEZABLE`, `RELEASABLE`, `FIRST_NOT_OUT`, `SUPPLEMENTABLE`
(a merge asks by a supplement), `SUPPLEMENT_ANSWERABLE` and `TERMINAL_STATES`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Final
from uuid import UUID

from stopper.domain.errors import IllegalTransition, InvalidAmount
from stopper.domain.messages import RequestStop


class HoldState(enum.StrEnum):
    REQUESTED = "requested"
    SENT = "sent"
    UNCONFIRMED = "unconfirmed"
    STOPPED = "stopped"
    NOT_FOUND = "not_found"
    REJECTED = "rejected"
    FAILED = "failed"
    FROZEN = "frozen"
    EXPIRED = "expired"
    RETURNING = "returning"
    RETURNED = "returned"
    RELEASING = "releasing"
    RELEASED = "released"


class HoldEvent(enum.StrEnum):
    REQUEST_SENT = "request_sent"
    ACCEPTED = "accepted"
    # The last attempt went unanswered (it timed out, or its answer could not be read: the
    # institution may have acted) and no more are to be made: asked about before it may fail.
    UNANSWERED = "unanswered"
    STOP_CONFIRMED = "stop_confirmed"
    NOT_FOUND = "not_found"
    REJECTED = "rejected"
    GAVE_UP = "gave_up"
    REAPPLIED = "reapplied"
    FREEZE_CONFIRMED = "freeze_confirmed"
    FREEZE_RENEWED = "freeze_renewed"
    LAPSED = "lapsed"
    STOP_LIFTED = "stop_lifted"  # re-verification: the institution no longer holds the stop
    RETURN_STARTED = "return_started"
    RETURN_CONFIRMED = "return_confirmed"
    RETURN_REFUSED = "return_refused"
    MERGED = "merged"
    RELEASE_ORDERED = "release_ordered"
    RELEASE_CONFIRMED = "release_confirmed"
    REQUEST_CANCELLED = "request_cancelled"
    # A supplement's steps, recorded on its hold (`stopper.domain.supplements`).
    SUPPLEMENT_SENT = "supplement_sent"
    SUPPLEMENT_ACCEPTED = "supplement_accepted"
    # Its last attempt went unanswered: the institution is asked about it before it may fail.
    SUPPLEMENT_UNANSWERED = "supplement_unanswered"
    SUPPLEMENT_STOPPED = "supplement_stopped"
    SUPPLEMENT_REFUSED = "supplement_refused"  # not found, or rejected: the cause says which
    SUPPLEMENT_FAILED = "supplement_failed"  # Stopper gave up asking for the extra


S = HoldState
E = HoldEvent
# What a supplement's answer (or Stopper giving up on it) records on its hold.
SUPPLEMENT_OUTCOMES: Final = (
    HoldEvent.SUPPLEMENT_ACCEPTED,
    HoldEvent.SUPPLEMENT_UNANSWERED,
    HoldEvent.SUPPLEMENT_STOPPED,
    HoldEvent.SUPPLEMENT_REFUSED,
    HoldEvent.SUPPLEMENT_FAILED,
)

TRANSITIONS: Final[Mapping[tuple[HoldState, HoldEvent], HoldState]] = MappingProxyType(
    {
        (S.REQUESTED, E.REQUEST_SENT): S.SENT,
        (S.REQUESTED, E.GAVE_UP): S.FAILED,
        (S.REQUESTED, E.MERGED): S.REQUESTED,
        (S.SENT, E.STOP_CONFIRMED): S.STOPPED,
        (S.SENT, E.NOT_FOUND): S.NOT_FOUND,
        (S.SENT, E.REJECTED): S.REJECTED,
        (S.SENT, E.GAVE_UP): S.FAILED,
        (S.SENT, E.ACCEPTED): S.UNCONFIRMED,
        (S.SENT, E.UNANSWERED): S.UNCONFIRMED,
        (S.SENT, E.MERGED): S.SENT,
        (S.UNCONFIRMED, E.STOP_CONFIRMED): S.STOPPED,
        (S.UNCONFIRMED, E.NOT_FOUND): S.NOT_FOUND,
        (S.UNCONFIRMED, E.REJECTED): S.REJECTED,
        (S.UNCONFIRMED, E.REQUEST_SENT): S.SENT,
        (S.UNCONFIRMED, E.GAVE_UP): S.FAILED,
        (S.UNCONFIRMED, E.MERGED): S.UNCONFIRMED,
        (S.FAILED, E.STOP_CONFIRMED): S.STOPPED,
        (S.FAILED, E.NOT_FOUND): S.NOT_FOUND,
        (S.FAILED, E.REJECTED): S.REJECTED,
        (S.FAILED, E.MERGED): S.FAILED,
        (S.STOPPED, E.FREEZE_CONFIRMED): S.FROZEN,
        (S.STOPPED, E.LAPSED): S.EXPIRED,
        (S.STOPPED, E.STOP_LIFTED): S.EXPIRED,
        (S.STOPPED, E.REAPPLIED): S.REQUESTED,
        (S.STOPPED, E.MERGED): S.STOPPED,
        (S.EXPIRED, E.REAPPLIED): S.REQUESTED,
        (S.EXPIRED, E.MERGED): S.EXPIRED,
        (S.FROZEN, E.LAPSED): S.EXPIRED,
        (S.FROZEN, E.FREEZE_RENEWED): S.FROZEN,
        (S.FROZEN, E.RETURN_STARTED): S.RETURNING,
        (S.FROZEN, E.MERGED): S.FROZEN,
        (S.RETURNING, E.RETURN_CONFIRMED): S.RETURNED,
        (S.RETURNING, E.RETURN_REFUSED): S.FROZEN,
        (S.RETURNING, E.MERGED): S.RETURNING,
        # Releases: every state whose stop is in force, or may be, or is still owed.
        (S.REQUESTED, E.REQUEST_CANCELLED): S.RELEASED,
        (S.REQUESTED, E.RELEASE_ORDERED): S.RELEASING,
        (S.SENT, E.RELEASE_ORDERED): S.RELEASING,
        (S.UNCONFIRMED, E.RELEASE_ORDERED): S.RELEASING,
        (S.FAILED, E.RELEASE_ORDERED): S.RELEASING,
        (S.STOPPED, E.RELEASE_ORDERED): S.RELEASING,
        (S.FROZEN, E.RELEASE_ORDERED): S.RELEASING,
        (S.EXPIRED, E.RELEASE_ORDERED): S.RELEASING,
        (S.RELEASING, E.RELEASE_CONFIRMED): S.RELEASED,
        # A supplement is asked only while the first request is out or its stop is in force;
        # its answer counts in every state the stop may still be in (not once it is over, nor
        # in a new generation, which asks for everything again).
        **{(s, E.SUPPLEMENT_SENT): s for s in (S.SENT, S.UNCONFIRMED, S.STOPPED, S.FROZEN)},
        **{
            (s, e): s
            for s in (S.SENT, S.UNCONFIRMED, S.FAILED, S.STOPPED, S.EXPIRED, S.FROZEN, S.RETURNING)
            for e in SUPPLEMENT_OUTCOMES
        },
    }
)

# What the rest of Stopper asks of a state ("may it?"), derived from the table and never
# listed again, as h11's `_state.py` derives its guards.

_ALLOWING: Final[Mapping[HoldEvent, frozenset[HoldState]]] = MappingProxyType(
    {event: frozenset(s for s, e in TRANSITIONS if e is event) for event in HoldEvent}
)


def can(state: HoldState, event: HoldEvent) -> bool:
    """Whether `event` may happen to a hold in `state`."""
    return (state, event) in TRANSITIONS


def states_allowing(*events: HoldEvent) -> frozenset[HoldState]:
    """The states at least one of `events` may apply to."""
    return frozenset().union(*(_ALLOWING[event] for event in events))


# Each event's targets, wherever it applies (read on every answer: derived once).
_TARGETS: Final[Mapping[HoldEvent, frozenset[HoldState]]] = MappingProxyType(
    {event: frozenset(t for (_, e), t in TRANSITIONS.items() if e is event) for event in HoldEvent}
)


def leads_to(event: HoldEvent) -> HoldState:
    """The one state `event` leads to from wherever it applies (an answer's own state: a
    hold already there has heard it); `ValueError` for an event whose target depends on the
    state it applies to."""
    targets = _TARGETS[event]
    if len(targets) != 1:
        raise ValueError(f"{event.value} does not lead to one state")
    (target,) = targets
    return target


# An institution's answer to a stop request: what the request found.
ANSWER_EVENTS: Final[frozenset[HoldEvent]] = frozenset(
    {HoldEvent.STOP_CONFIRMED, HoldEvent.NOT_FOUND, HoldEvent.REJECTED}
)
# The states an institution's answer may apply to.
ANSWERABLE: Final[frozenset[HoldState]] = states_allowing(*ANSWER_EVENTS)
# A request went out and its answer is owed: the states sending it, or the institution
# accepting it, lead to. The retry sweeper makes their next attempt (a retry, a lapsed lease,
# a status inquiry).
AWAITING_ANSWER: Final[frozenset[HoldState]] = frozenset(
    leads_to(event) for event in (HoldEvent.REQUEST_SENT, HoldEvent.ACCEPTED)
)
# The states a formal freeze may be ordered in: a first freeze, or its renewal.
FREEZABLE: Final[frozenset[HoldState]] = states_allowing(
    HoldEvent.FREEZE_CONFIRMED, HoldEvent.FREEZE_RENEWED
)
# The states a release may be asked for in: ordered of the institution, or (a request that
# never left) cancelled at once.
RELEASABLE: Final[frozenset[HoldState]] = states_allowing(
    HoldEvent.RELEASE_ORDERED, HoldEvent.REQUEST_CANCELLED
)
# Events a person starts: a re-application (a new generation, not work left in the old one) and
# a release (an end decided, not one owed).
_STARTED_BY_A_PERSON: Final = frozenset(
    {HoldEvent.REAPPLIED, HoldEvent.RELEASE_ORDERED, HoldEvent.REQUEST_CANCELLED}
)
# A hold still in play: something is owed to it or may still happen to it without a person
# starting it again (a merge asks for more but leaves no work of its own, and a supplement's is
# the supplement's).
IN_PLAY: Final[frozenset[HoldState]] = frozenset(
    s
    for s, e in TRANSITIONS
    if e not in _STARTED_BY_A_PERSON
    and e not in (HoldEvent.MERGED, HoldEvent.SUPPLEMENT_SENT, *SUPPLEMENT_OUTCOMES)
)
# The first request is still owed and not out: a merge raises what it will ask for.
FIRST_NOT_OUT: Final[frozenset[HoldState]] = (
    states_allowing(HoldEvent.REQUEST_SENT) - AWAITING_ANSWER
)
# The first request is out, or its stop in force: a merge asks the extra by a supplement.
SUPPLEMENTABLE: Final[frozenset[HoldState]] = states_allowing(HoldEvent.SUPPLEMENT_SENT)
# A supplement's answer may still count for its hold.
SUPPLEMENT_ANSWERABLE: Final[frozenset[HoldState]] = states_allowing(*SUPPLEMENT_OUTCOMES)
# At most this many supplements per hold: a supplement's ISO 20022 CxlId has room for two
# digits of its number (35 characters). Past it, a merge raises the amount asked and sends
# nothing, as in the states that take no supplement.
MAX_SUPPLEMENTS: Final = 99
# Nothing may happen to a hold in these states any more.
TERMINAL_STATES: Final[frozenset[HoldState]] = frozenset(
    s for s in HoldState if not any(src == s for src, _ in TRANSITIONS)
)


class MergeAsks(enum.StrEnum):
    """What a merge into a hold asks of its institution (see the module's rules)."""

    FIRST_REQUEST = "first_request"  # the first request, not out yet, asks for the raised amount
    SUPPLEMENT = "supplement"  # a supplement of its own asks for the extra
    NOTHING = "nothing"  # nothing is sent now (failed, expired, returning; or supplements spent)


def merge_asks(state: HoldState, supplements: int) -> MergeAsks:
    """What a merge into a hold in `state` with `supplements` supplements so far asks for."""
    if state in FIRST_NOT_OUT:
        return MergeAsks.FIRST_REQUEST
    if state in SUPPLEMENTABLE and supplements < MAX_SUPPLEMENTS:
        return MergeAsks.SUPPLEMENT
    return MergeAsks.NOTHING


def idempotency_key_for(hold_id: UUID, generation: int = 0) -> str:
    """The key an institution uses to recognise a repeated stop request for the same hold.

    `generation` changes only when a person or a rule deliberately re-applies a stop.
    """
    return f"stopper-{hold_id}-{generation}"


def release_event(hold: Hold) -> HoldEvent:
    """How a release reaches `hold`: cancelled at once if its first stop request never left
    (nothing is at the institution), else ordered of the institution. Whether the state allows
    either is the table's to say (`IllegalTransition` from `Hold.apply`)."""
    if hold.state is HoldState.REQUESTED and hold.reapplications == 0:
        return HoldEvent.REQUEST_CANCELLED
    return HoldEvent.RELEASE_ORDERED


def next_state(state: HoldState, event: HoldEvent) -> HoldState:
    """The state `event` leads to from `state`, or `IllegalTransition`."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise IllegalTransition(state.value, event.value) from None


@dataclass(frozen=True, slots=True)
class Transition:
    """One recorded state change: the audit row, as the domain sees it."""

    hold_id: UUID
    from_state: HoldState | None
    to_state: HoldState
    event: HoldEvent | None
    cause: str
    actor: str
    at: datetime

    @classmethod
    def of(
        cls,
        hold_id: UUID,
        state: HoldState,
        event: HoldEvent,
        *,
        cause: str,
        actor: str,
        at: datetime,
    ) -> Transition:
        """The record of `event` on a hold in `state`, or `IllegalTransition`. `Hold.apply`
        makes it; so does the money trail, which sees a hold as a trail node, not whole."""
        return cls(hold_id, state, next_state(state, event), event, cause, actor, at)


@dataclass(slots=True)
class Hold:
    """One account's stop for one case. Amounts are in minor units (cents) of `currency`."""

    id: UUID
    case_id: UUID
    institution_code: str
    account_number: str
    currency: str
    amount_asked: int
    layer: int = 1
    parent_id: UUID | None = None
    state: HoldState = HoldState.REQUESTED
    version: int = 1
    amount_stopped: int = 0
    amount_frozen: int = 0
    amount_returned: int = 0
    reapplications: int = 0
    # What the first request of this generation asks (0: all of `amount_asked`, as born).
    amount_first_request: int = 0
    amount_stopped_by_supplements: int = 0  # of `amount_stopped`, what supplements hold
    supplements: int = 0  # supplements asked so far (every generation): the next one's number - 1
    history: list[Transition] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.amount_asked <= 0:
            raise InvalidAmount("a hold must ask for a positive amount")
        if self.layer < 1:
            raise InvalidAmount("layers start at 1 (the first-level account)")
        if self.amount_first_request == 0:
            self.amount_first_request = self.amount_asked

    @property
    def amount_stopped_by_first(self) -> int:
        """What the answer to the first request holds (the rest of `amount_stopped` is the
        supplements')."""
        return self.amount_stopped - self.amount_stopped_by_supplements

    def stop_request(self, requested_at: datetime) -> RequestStop:
        """The stop request owed for this hold, with the idempotency key of its generation:
        the same key for every retry, a new one only when the stop is deliberately re-applied."""
        return RequestStop(
            hold_id=self.id,
            case_id=self.case_id,
            institution_code=self.institution_code,
            account_number=self.account_number,
            currency=self.currency,
            amount=self.amount_first_request,
            layer=self.layer,
            idempotency_key=idempotency_key_for(self.id, self.reapplications),
            generation=self.reapplications,
            requested_at=requested_at,
        )

    def apply(
        self,
        event: HoldEvent,
        *,
        cause: str,
        actor: str,
        at: datetime,
        amount: int | None = None,
    ) -> Transition:
        """Move the hold by `event`; raise and change nothing if the event is not allowed.

        `amount` is the amount the institution reports for ``stop_confirmed`` (what the first
        request holds, at most what it asked) and ``supplement_stopped`` (what a supplement
        holds, never past `amount_asked` in all), and ``freeze_confirmed`` (at most what was
        stopped); for ``merged``, how much more is asked.
        """
        transition = Transition.of(self.id, self.state, event, cause=cause, actor=actor, at=at)
        if event is HoldEvent.STOP_CONFIRMED:
            first = _checked(amount, ceiling=self.amount_first_request, what="stopped")
            self.amount_stopped = first + self.amount_stopped_by_supplements
        elif event is HoldEvent.SUPPLEMENT_STOPPED:
            more = _checked(
                amount, ceiling=self.amount_asked - self.amount_stopped, what="stopped more"
            )
            self.amount_stopped += more
            self.amount_stopped_by_supplements += more
        elif event in (HoldEvent.FREEZE_CONFIRMED, HoldEvent.FREEZE_RENEWED):
            self.amount_frozen = _checked(amount, ceiling=self.amount_stopped, what="frozen")
        elif event is HoldEvent.RETURN_CONFIRMED:
            self.amount_returned = _checked(amount, ceiling=self.amount_frozen, what="returned")
        elif event is HoldEvent.REAPPLIED:
            # A new generation asks for everything, supplements included, in its first request.
            self.reapplications += 1
            self.amount_first_request = self.amount_asked
            self.amount_stopped_by_supplements = 0
        elif event is HoldEvent.REQUEST_CANCELLED and self.reapplications:
            # A re-applied hold's earlier stop was at the institution: it must be asked.
            raise IllegalTransition(self.state.value, event.value)
        elif event is HoldEvent.MERGED:
            if amount is None or amount <= 0:
                raise InvalidAmount("a merge asks for a positive amount more")
            asks = merge_asks(self.state, self.supplements)
            self.amount_asked += amount
            if asks is MergeAsks.FIRST_REQUEST:
                self.amount_first_request += amount
            elif asks is MergeAsks.SUPPLEMENT:
                self.supplements += 1
        self.state = transition.to_state
        self.version += 1
        self.history.append(transition)
        return transition


def _checked(amount: int | None, *, ceiling: int, what: str) -> int:
    # Validate before any field changes, so an illegal amount leaves the hold untouched.
    if amount is None:
        raise InvalidAmount(f"the amount {what} is required")
    if amount < 0 or amount > ceiling:
        raise InvalidAmount(f"amount {what} {amount} outside 0..{ceiling}")
    return amount
