"""The hold state machine: every allowed and every illegal transition, no fakes needed."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from uuid import uuid4

import pytest

from stopper.domain.errors import IllegalTransition, InvalidAmount
from stopper.domain.holds import (
    ANSWERABLE,
    AWAITING_ANSWER,
    FIRST_NOT_OUT,
    FREEZABLE,
    IN_PLAY,
    MAX_SUPPLEMENTS,
    RELEASABLE,
    SUPPLEMENT_ANSWERABLE,
    SUPPLEMENTABLE,
    TERMINAL_STATES,
    TRANSITIONS,
    Hold,
    HoldEvent,
    HoldState,
    MergeAsks,
    can,
    leads_to,
    merge_asks,
    next_state,
    release_event,
    states_allowing,
)

AT = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
ALL_PAIRS = list(itertools.product(HoldState, HoldEvent))
ALLOWED = [pair for pair in ALL_PAIRS if pair in TRANSITIONS]
ILLEGAL = [pair for pair in ALL_PAIRS if pair not in TRANSITIONS]

# The lifecycle of DOMAIN.md, written out independently of the table it checks.
EXPECTED = {
    (HoldState.REQUESTED, HoldEvent.REQUEST_SENT): HoldState.SENT,
    (HoldState.REQUESTED, HoldEvent.GAVE_UP): HoldState.FAILED,
    (HoldState.SENT, HoldEvent.STOP_CONFIRMED): HoldState.STOPPED,
    (HoldState.SENT, HoldEvent.NOT_FOUND): HoldState.NOT_FOUND,
    (HoldState.SENT, HoldEvent.REJECTED): HoldState.REJECTED,
    (HoldState.SENT, HoldEvent.GAVE_UP): HoldState.FAILED,
    (HoldState.SENT, HoldEvent.ACCEPTED): HoldState.UNCONFIRMED,
    (HoldState.SENT, HoldEvent.UNANSWERED): HoldState.UNCONFIRMED,
    (HoldState.UNCONFIRMED, HoldEvent.STOP_CONFIRMED): HoldState.STOPPED,
    (HoldState.UNCONFIRMED, HoldEvent.NOT_FOUND): HoldState.NOT_FOUND,
    (HoldState.UNCONFIRMED, HoldEvent.REJECTED): HoldState.REJECTED,
    (HoldState.UNCONFIRMED, HoldEvent.REQUEST_SENT): HoldState.SENT,
    (HoldState.UNCONFIRMED, HoldEvent.GAVE_UP): HoldState.FAILED,
    (HoldState.FAILED, HoldEvent.STOP_CONFIRMED): HoldState.STOPPED,
    (HoldState.FAILED, HoldEvent.NOT_FOUND): HoldState.NOT_FOUND,
    (HoldState.FAILED, HoldEvent.REJECTED): HoldState.REJECTED,
    (HoldState.STOPPED, HoldEvent.FREEZE_CONFIRMED): HoldState.FROZEN,
    (HoldState.STOPPED, HoldEvent.LAPSED): HoldState.EXPIRED,
    (HoldState.STOPPED, HoldEvent.STOP_LIFTED): HoldState.EXPIRED,
    (HoldState.STOPPED, HoldEvent.REAPPLIED): HoldState.REQUESTED,
    (HoldState.EXPIRED, HoldEvent.REAPPLIED): HoldState.REQUESTED,
    (HoldState.FROZEN, HoldEvent.LAPSED): HoldState.EXPIRED,
    (HoldState.FROZEN, HoldEvent.FREEZE_RENEWED): HoldState.FROZEN,
    (HoldState.FROZEN, HoldEvent.RETURN_STARTED): HoldState.RETURNING,
    (HoldState.RETURNING, HoldEvent.RETURN_CONFIRMED): HoldState.RETURNED,
    (HoldState.RETURNING, HoldEvent.RETURN_REFUSED): HoldState.FROZEN,
    # A merge asks for more and leaves the state as it is, in every state that is not over.
    **{
        (state, HoldEvent.MERGED): state
        for state in (
            HoldState.REQUESTED,
            HoldState.SENT,
            HoldState.UNCONFIRMED,
            HoldState.FAILED,
            HoldState.STOPPED,
            HoldState.EXPIRED,
            HoldState.FROZEN,
            HoldState.RETURNING,
        )
    },
    # A release: ordered of the institution wherever a stop is in force, may be, or is owed
    # (not while the money is on its way to the victims), confirmed by it; a request that never
    # left is cancelled without asking.
    **{
        (state, HoldEvent.RELEASE_ORDERED): HoldState.RELEASING
        for state in (
            HoldState.REQUESTED,
            HoldState.SENT,
            HoldState.UNCONFIRMED,
            HoldState.FAILED,
            HoldState.STOPPED,
            HoldState.FROZEN,
            HoldState.EXPIRED,
        )
    },
    (HoldState.RELEASING, HoldEvent.RELEASE_CONFIRMED): HoldState.RELEASED,
    (HoldState.REQUESTED, HoldEvent.REQUEST_CANCELLED): HoldState.RELEASED,
    # A supplement is asked while the request is out or the stop in force ...
    **{
        (state, HoldEvent.SUPPLEMENT_SENT): state
        for state in (HoldState.SENT, HoldState.UNCONFIRMED, HoldState.STOPPED, HoldState.FROZEN)
    },
    # ... and what becomes of it is recorded wherever the stop may still be.
    **{
        (state, event): state
        for state in (
            HoldState.SENT,
            HoldState.UNCONFIRMED,
            HoldState.FAILED,
            HoldState.STOPPED,
            HoldState.EXPIRED,
            HoldState.FROZEN,
            HoldState.RETURNING,
        )
        for event in (
            HoldEvent.SUPPLEMENT_ACCEPTED,
            HoldEvent.SUPPLEMENT_UNANSWERED,
            HoldEvent.SUPPLEMENT_STOPPED,
            HoldEvent.SUPPLEMENT_REFUSED,
            HoldEvent.SUPPLEMENT_FAILED,
        )
    },
}


def hold_in(
    state: HoldState, *, asked: int = 10_000, stopped: int = 8_000, frozen: int = 8_000
) -> Hold:
    return Hold(
        id=uuid4(),
        case_id=uuid4(),
        institution_code="BK01",
        account_number="6222000011112222",
        currency="CNY",
        amount_asked=asked,
        state=state,
        amount_stopped=stopped,
        amount_frozen=frozen,
    )


def amount_for(event: HoldEvent) -> int | None:
    return {
        HoldEvent.STOP_CONFIRMED: 7_000,
        HoldEvent.FREEZE_CONFIRMED: 6_000,
        HoldEvent.FREEZE_RENEWED: 6_000,
        HoldEvent.RETURN_CONFIRMED: 5_000,
        HoldEvent.MERGED: 1_000,
        HoldEvent.SUPPLEMENT_STOPPED: 1_000,
    }.get(event)


def test_table_is_the_documented_lifecycle() -> None:
    assert dict(TRANSITIONS) == EXPECTED


def test_terminal_states() -> None:
    assert TERMINAL_STATES == {
        HoldState.NOT_FOUND,
        HoldState.REJECTED,
        HoldState.RETURNED,
        HoldState.RELEASED,
    }


def test_released_is_reached_only_by_the_institution_s_confirmation_or_a_request_never_sent() -> (
    None
):
    assert {(s, e) for (s, e), t in TRANSITIONS.items() if t is HoldState.RELEASED} == {
        (HoldState.RELEASING, HoldEvent.RELEASE_CONFIRMED),
        (HoldState.REQUESTED, HoldEvent.REQUEST_CANCELLED),
    }


S = HoldState


def test_the_guards_others_ask_are_the_table_s() -> None:
    assert IN_PLAY == {
        S.REQUESTED,
        S.SENT,
        S.UNCONFIRMED,
        S.STOPPED,
        S.FAILED,
        S.FROZEN,
        S.RETURNING,
        S.RELEASING,
    }
    assert AWAITING_ANSWER == {S.SENT, S.UNCONFIRMED}
    assert ANSWERABLE == {S.SENT, S.UNCONFIRMED, S.FAILED}
    assert FREEZABLE == {S.STOPPED, S.FROZEN}
    assert states_allowing(HoldEvent.REAPPLIED) == {S.EXPIRED, S.STOPPED}
    assert states_allowing() == set()
    assert IN_PLAY.isdisjoint(TERMINAL_STATES)
    assert RELEASABLE == {
        S.REQUESTED,
        S.SENT,
        S.UNCONFIRMED,
        S.FAILED,
        S.STOPPED,
        S.FROZEN,
        S.EXPIRED,
    }
    # Nothing is released while its money goes to the victims, nor once it is over.
    assert RELEASABLE.isdisjoint(TERMINAL_STATES | {S.RETURNING, S.RELEASING})


def test_a_releasing_hold_takes_no_stop_answer_lapse_freeze_or_merge() -> None:
    assert {e for (s, e) in TRANSITIONS if s is S.RELEASING} == {HoldEvent.RELEASE_CONFIRMED}
    assert S.RELEASING not in ANSWERABLE | FREEZABLE | AWAITING_ANSWER


def test_a_release_is_cancelled_at_once_only_for_a_first_request_never_sent() -> None:
    never_sent = hold_in(S.REQUESTED)
    assert release_event(never_sent) is HoldEvent.REQUEST_CANCELLED
    never_sent.apply(HoldEvent.REQUEST_CANCELLED, cause="withdrawn", actor="officer", at=AT)
    assert never_sent.state is S.RELEASED

    # Re-applied: its earlier stop was at the institution, which must be asked to lift it.
    again = hold_in(S.STOPPED)
    again.apply(HoldEvent.REAPPLIED, cause="renewed", actor="officer", at=AT)
    assert again.state is S.REQUESTED
    assert release_event(again) is HoldEvent.RELEASE_ORDERED
    with pytest.raises(IllegalTransition):
        again.apply(HoldEvent.REQUEST_CANCELLED, cause="withdrawn", actor="officer", at=AT)
    assert (again.state, again.version, len(again.history)) == (S.REQUESTED, 2, 1)
    for state in (S.SENT, S.UNCONFIRMED, S.STOPPED, S.FROZEN, S.EXPIRED, S.FAILED):
        assert release_event(hold_in(state)) is HoldEvent.RELEASE_ORDERED


def test_a_release_ordered_and_confirmed_is_recorded_with_who_and_why() -> None:
    hold = hold_in(S.FROZEN)
    ordered = hold.apply(
        HoldEvent.RELEASE_ORDERED,
        cause="release ordered by operator:li.wei: report withdrawn",
        actor="operator:li.wei",
        at=AT,
    )
    confirmed = hold.apply(
        HoldEvent.RELEASE_CONFIRMED, cause="released at BK01", actor="institution:BK01", at=AT
    )
    assert hold.state is S.RELEASED and hold.state in TERMINAL_STATES
    assert [(t.from_state, t.to_state, t.actor) for t in (ordered, confirmed)] == [
        (S.FROZEN, S.RELEASING, "operator:li.wei"),
        (S.RELEASING, S.RELEASED, "institution:BK01"),
    ]
    # The amounts stay as they were: what the stop held is the record of what was released.
    assert (hold.amount_stopped, hold.amount_frozen) == (8_000, 8_000)


@pytest.mark.parametrize(("state", "event"), ALL_PAIRS, ids=lambda v: str(v))
def test_can_says_what_apply_does(state: HoldState, event: HoldEvent) -> None:
    assert can(state, event) is ((state, event) in EXPECTED)
    assert (state in states_allowing(event)) is can(state, event)


def test_an_answer_leads_to_its_own_state() -> None:
    assert leads_to(HoldEvent.STOP_CONFIRMED) is S.STOPPED
    assert leads_to(HoldEvent.NOT_FOUND) is S.NOT_FOUND
    assert leads_to(HoldEvent.REJECTED) is S.REJECTED
    assert leads_to(HoldEvent.LAPSED) is S.EXPIRED
    assert leads_to(HoldEvent.STOP_LIFTED) is S.EXPIRED


@pytest.mark.parametrize(("state", "event"), ALLOWED, ids=lambda v: str(v))
def test_allowed_transition_moves_and_is_recorded(state: HoldState, event: HoldEvent) -> None:
    hold = hold_in(state)
    transition = hold.apply(event, cause="test", actor="tester", at=AT, amount=amount_for(event))
    assert hold.state is EXPECTED[(state, event)]
    assert hold.version == 2
    assert (transition.from_state, transition.to_state, transition.event) == (
        state,
        hold.state,
        event,
    )
    assert (transition.cause, transition.actor, transition.at) == ("test", "tester", AT)
    assert hold.history == [transition]


@pytest.mark.parametrize(("state", "event"), ILLEGAL, ids=lambda v: str(v))
def test_illegal_transition_raises_and_changes_nothing(state: HoldState, event: HoldEvent) -> None:
    hold = hold_in(state)
    before = (
        hold.state,
        hold.version,
        hold.amount_asked,
        hold.amount_stopped,
        hold.amount_frozen,
        hold.amount_returned,
        hold.reapplications,
        list(hold.history),
    )
    with pytest.raises(IllegalTransition) as raised:
        hold.apply(event, cause="test", actor="tester", at=AT, amount=amount_for(event))
    assert (raised.value.state, raised.value.event) == (state.value, event.value)
    assert before == (
        hold.state,
        hold.version,
        hold.amount_asked,
        hold.amount_stopped,
        hold.amount_frozen,
        hold.amount_returned,
        hold.reapplications,
        hold.history,
    )
    with pytest.raises(IllegalTransition):
        next_state(state, event)


def test_stop_records_the_amount_actually_held() -> None:
    hold = hold_in(HoldState.SENT, stopped=0)
    hold.apply(HoldEvent.STOP_CONFIRMED, cause="callback", actor="BK01", at=AT, amount=2_500)
    assert (hold.state, hold.amount_stopped) == (HoldState.STOPPED, 2_500)


@pytest.mark.parametrize(
    ("state", "event", "amount"),
    [
        (HoldState.SENT, HoldEvent.STOP_CONFIRMED, 10_001),  # more than asked
        (HoldState.SENT, HoldEvent.STOP_CONFIRMED, -1),
        (HoldState.SENT, HoldEvent.STOP_CONFIRMED, None),
        (HoldState.STOPPED, HoldEvent.FREEZE_CONFIRMED, 8_001),  # more than stopped
        (HoldState.RETURNING, HoldEvent.RETURN_CONFIRMED, 8_001),  # more than frozen
    ],
)
def test_impossible_amounts_raise_and_change_nothing(
    state: HoldState, event: HoldEvent, amount: int | None
) -> None:
    hold = hold_in(state)
    with pytest.raises(InvalidAmount):
        hold.apply(event, cause="test", actor="tester", at=AT, amount=amount)
    assert (hold.state, hold.version, hold.history) == (state, 1, [])
    assert (hold.amount_stopped, hold.amount_frozen, hold.amount_returned) == (8_000, 8_000, 0)


def test_a_merge_asks_for_more_and_is_recorded_in_the_same_state() -> None:
    hold = hold_in(HoldState.STOPPED)
    transition = hold.apply(HoldEvent.MERGED, cause="trail", actor="t", at=AT, amount=2_500)
    assert (hold.state, hold.amount_asked, hold.amount_stopped) == (S.STOPPED, 12_500, 8_000)
    assert (transition.from_state, transition.to_state) == (S.STOPPED, S.STOPPED)
    assert hold.history == [transition] and hold.version == 2


@pytest.mark.parametrize("amount", [0, -1, None])
def test_a_merge_must_ask_for_something_more(amount: int | None) -> None:
    hold = hold_in(HoldState.SENT)
    with pytest.raises(InvalidAmount):
        hold.apply(HoldEvent.MERGED, cause="trail", actor="t", at=AT, amount=amount)
    assert (hold.amount_asked, hold.version, hold.history) == (10_000, 1, [])


def test_a_merge_leads_to_no_one_state() -> None:
    with pytest.raises(ValueError, match="merged"):
        leads_to(HoldEvent.MERGED)
    assert states_allowing(HoldEvent.MERGED) == set(HoldState) - TERMINAL_STATES - {S.RELEASING}


def test_reapplication_is_counted() -> None:
    hold = hold_in(HoldState.EXPIRED)
    hold.apply(HoldEvent.REAPPLIED, cause="operator", actor="officer-7", at=AT)
    assert (hold.state, hold.reapplications) == (HoldState.REQUESTED, 1)


@pytest.mark.parametrize(
    ("state", "asks"),
    [
        (S.REQUESTED, MergeAsks.FIRST_REQUEST),
        (S.SENT, MergeAsks.SUPPLEMENT),
        (S.UNCONFIRMED, MergeAsks.SUPPLEMENT),
        (S.STOPPED, MergeAsks.SUPPLEMENT),
        (S.FROZEN, MergeAsks.SUPPLEMENT),
        (S.FAILED, MergeAsks.NOTHING),
        (S.EXPIRED, MergeAsks.NOTHING),
        (S.RETURNING, MergeAsks.NOTHING),
    ],
)
def test_what_a_merge_asks_of_the_institution_follows_the_hold_s_state(
    state: HoldState, asks: MergeAsks
) -> None:
    assert merge_asks(state, 0) is asks
    hold = hold_in(state)
    hold.apply(HoldEvent.MERGED, cause="trail", actor="t", at=AT, amount=2_500)
    assert hold.amount_asked == 12_500
    assert hold.amount_first_request == (12_500 if asks is MergeAsks.FIRST_REQUEST else 10_000)
    assert hold.supplements == (1 if asks is MergeAsks.SUPPLEMENT else 0)
    assert hold.stop_request(AT).amount == hold.amount_first_request


def test_the_derived_supplement_sets_are_the_table_s() -> None:
    assert FIRST_NOT_OUT == {S.REQUESTED}
    assert SUPPLEMENTABLE == {S.SENT, S.UNCONFIRMED, S.STOPPED, S.FROZEN}
    assert SUPPLEMENT_ANSWERABLE == states_allowing(HoldEvent.MERGED) - {S.REQUESTED}


def test_supplements_are_numbered_up_to_their_limit_then_a_merge_only_raises() -> None:
    assert merge_asks(S.STOPPED, MAX_SUPPLEMENTS - 1) is MergeAsks.SUPPLEMENT
    assert merge_asks(S.STOPPED, MAX_SUPPLEMENTS) is MergeAsks.NOTHING


def test_the_first_answer_and_the_supplements_add_up_in_any_order_never_past_the_ask() -> None:
    hold = hold_in(S.SENT, asked=10_000, stopped=0)
    hold.apply(HoldEvent.MERGED, cause="trail", actor="t", at=AT, amount=4_000)
    hold.apply(HoldEvent.SUPPLEMENT_STOPPED, cause="s1", actor="i", at=AT, amount=3_000)
    assert (hold.state, hold.amount_stopped, hold.amount_stopped_by_first) == (S.SENT, 3_000, 0)
    hold.apply(HoldEvent.STOP_CONFIRMED, cause="first", actor="i", at=AT, amount=9_000)
    assert (hold.amount_stopped, hold.amount_stopped_by_supplements) == (12_000, 3_000)
    with pytest.raises(InvalidAmount):  # the first request asked 10,000: never more
        hold_in(S.SENT).apply(HoldEvent.STOP_CONFIRMED, cause="x", actor="i", at=AT, amount=10_001)
    with pytest.raises(InvalidAmount):  # 12,000 of 14,000 held: at most 2,000 more
        hold.apply(HoldEvent.SUPPLEMENT_STOPPED, cause="s2", actor="i", at=AT, amount=2_001)
    assert hold.amount_stopped == 12_000


def test_a_reapplication_asks_for_everything_in_its_first_request() -> None:
    hold = hold_in(S.STOPPED, asked=10_000, stopped=0)
    hold.apply(HoldEvent.MERGED, cause="trail", actor="t", at=AT, amount=4_000)
    hold.apply(HoldEvent.SUPPLEMENT_STOPPED, cause="s1", actor="i", at=AT, amount=4_000)
    hold.apply(HoldEvent.REAPPLIED, cause="operator", actor="officer-7", at=AT)
    assert (hold.amount_first_request, hold.amount_stopped_by_supplements) == (14_000, 0)
    request = hold.stop_request(AT)
    assert (request.amount, request.generation, request.supplement) == (14_000, 1, None)


def test_a_hold_must_ask_for_something() -> None:
    with pytest.raises(InvalidAmount):
        hold_in(HoldState.REQUESTED, asked=0)


def test_full_happy_path() -> None:
    hold = hold_in(HoldState.REQUESTED, stopped=0, frozen=0)
    for event, amount in [
        (HoldEvent.REQUEST_SENT, None),
        (HoldEvent.STOP_CONFIRMED, 9_000),
        (HoldEvent.FREEZE_CONFIRMED, 9_000),
        (HoldEvent.RETURN_STARTED, None),
        (HoldEvent.RETURN_CONFIRMED, 9_000),
    ]:
        hold.apply(event, cause="step", actor="test", at=AT, amount=amount)
    assert hold.state is HoldState.RETURNED
    assert [t.to_state for t in hold.history] == [
        HoldState.SENT,
        HoldState.STOPPED,
        HoldState.FROZEN,
        HoldState.RETURNING,
        HoldState.RETURNED,
    ]
    assert hold.amount_returned == 9_000
