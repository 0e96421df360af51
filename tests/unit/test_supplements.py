"""Supplements with hand-written fakes: a trail merge into a hold whose request is out asks the
institution for the extra, once per merge, and its answers add up with the first request's."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from uuid import uuid4

import pytest

from stopper.app.callbacks import CallbackHandler
from stopper.app.dispatch import Dispatcher
from stopper.app.gateway import InstitutionGateway
from stopper.app.ports import HoldRecord, HoldUpdate
from stopper.app.reconcile import Reconciler
from stopper.app.rotating_secrets import RotatingSecret
from stopper.app.stop_decisions import AnswerOutcome
from stopper.app.stop_requests import StopRequestConsumer
from stopper.config import DispatchSettings
from stopper.contracts.amounts import format_amount
from stopper.contracts.institutions import StopRequestV1
from stopper.contracts.signing import signed_headers
from stopper.domain.holds import Hold, HoldEvent, HoldState
from stopper.domain.messages import (
    AnswerKind,
    InstitutionAnswer,
    OnwardKind,
    OnwardTransfer,
    StatusKind,
    StopStatus,
)
from stopper.domain.supplements import supplement_key_for
from stopper.errors import (
    CallbackRefused,
    InstitutionError,
    InstitutionTimeout,
    InstitutionUnavailable,
)
from stopper.metrics import SUPPLEMENTS
from stopper.registry import BreakerPolicy, Registry, RetryPolicy, load_registry
from tests.unit.fakes import (
    FakeDispatchStore,
    FakePublisher,
    FixedClock,
    Scripted,
    ScriptedAdapter,
    message,
    new_record,
    requested_hold,
)

REGISTRY = load_registry()
NOW = requested_hold().requested_at
ACCOUNT = "880011112222"  # the sibling's, at PI02: where the money merges in
SECRETS = {i.callback_secret_ref: RotatingSecret(f"secret-{i.code}") for i in REGISTRY.values()}


def stopped(held: int, *onward: OnwardTransfer) -> InstitutionAnswer:
    return InstitutionAnswer(AnswerKind.STOPPED, amount_held=held, onward=onward)


def to_sibling(*amounts: int) -> tuple[OnwardTransfer, ...]:
    return tuple(OnwardTransfer(OnwardKind.TRANSFER, a, NOW, "PI02", ACCOUNT) for a in amounts)


class World:
    """A case of two first-level holds: `parent` at BK01 (its answer sends money on to the
    sibling's account) and `sibling` at PI02, each institution answering from its script."""

    def __init__(
        self, bk01: list[Scripted], pi02: list[Scripted], registry: Registry = REGISTRY
    ) -> None:
        self.store = FakeDispatchStore()
        self.adapter = ScriptedAdapter({"BK01": bk01, "PI02": pi02})
        self.clock = FixedClock(NOW)
        rng = random.Random(1)
        self.dispatcher = Dispatcher(
            self.store,
            InstitutionGateway(self.adapter, registry, hedge=False, rng=rng),
            self.clock,
            DispatchSettings().policy(),
            rng,
        )
        self.parent = requested_hold("BK01", amount=100_000, at=NOW)
        sibling = Hold(uuid4(), self.parent.hold.case_id, "PI02", ACCOUNT, "CNY", 20_000)
        self.sibling_id = sibling.id
        self.store.add(self.parent)
        self.store.add(new_record(sibling, NOW, NOW))

    @property
    def sibling(self) -> Hold:
        return self.store.holds[self.sibling_id].hold

    def sibling_requests(self) -> list[StopRequestV1]:
        return [
            StopRequestV1.from_command(r)
            for r in self.adapter.requests
            if r.hold_id == self.sibling_id
        ]

    def events(self) -> list[HoldEvent | None]:
        return [t.event for t in self.store.transitions if t.hold_id == self.sibling_id]

    async def consume_outbox(self) -> None:
        """The stop-request consumer reads what the outbox holds for the stop-requests topic."""
        consumer = StopRequestConsumer(self.dispatcher, FakePublisher(), "dlq")
        batch = [
            message(json.dumps(m.payload).encode(), offset=m.id, key=m.key)
            for m in self.store.outbox
            if m.topic == self.store.stop_request_topic
        ]
        await consumer.handle_batch(batch)
        await self.dispatcher.wait_idle()

    async def sweep(self, seconds: int) -> None:
        for _ in range(seconds):
            self.clock.at += timedelta(seconds=1)
            await self.dispatcher.sweep_once()
            await self.dispatcher.wait_idle()


async def stopped_then_merged(world: World) -> None:
    """The sibling is stopped first; then the parent's answer sends money on into its account."""
    await world.dispatcher.attempt(world.sibling_id, first=True)
    await world.dispatcher.attempt(world.parent.hold.id, first=True)


def supplement_requests(world: World) -> list[StopRequestV1]:
    return [r for r in world.sibling_requests() if r.supplement is not None]


async def test_a_merge_into_a_stopped_hold_asks_for_the_extra_once_and_adds_what_is_held() -> None:
    world = World([stopped(40_000, *to_sibling(30_000))], [stopped(20_000), stopped(25_000)])
    await stopped_then_merged(world)
    sibling = world.sibling
    assert (sibling.state, sibling.amount_asked, sibling.amount_first_request) == (
        HoldState.STOPPED,
        50_000,
        20_000,
    )
    [owed] = [m for m in world.store.outbox if m.payload.get("supplement")]
    assert owed.key == str(world.sibling_id)
    assert owed.payload["amount"] == format_amount(30_000)
    assert owed.payload["supplement"] == {
        "number": 1,
        "adds_to": f"stopper-{world.sibling_id}-0",
        "merged_from_hold_id": str(world.parent.hold.id),
    }
    first_payloads = [m.payload for m in world.store.outbox if not m.payload.get("supplement")]
    assert all("supplement" not in p for p in first_payloads)  # as institutions knew it

    await world.consume_outbox()
    await world.consume_outbox()  # the record delivered again: nothing more is asked
    [asked] = supplement_requests(world)
    assert (asked.idempotency_key, asked.amount) == (f"stopper-{world.sibling_id}-s1", 30_000)
    sibling = world.sibling
    assert sibling.state is HoldState.STOPPED
    assert (sibling.amount_stopped, sibling.amount_stopped_by_supplements) == (45_000, 25_000)
    assert world.events() == [
        HoldEvent.REQUEST_SENT,
        HoldEvent.STOP_CONFIRMED,
        HoldEvent.MERGED,
        HoldEvent.SUPPLEMENT_SENT,
        HoldEvent.SUPPLEMENT_STOPPED,
    ]
    audit = [t for t in world.store.transitions if t.hold_id == world.sibling_id][-2:]
    assert all(t.from_state is t.to_state is HoldState.STOPPED for t in audit)
    assert "25000 of 30000 held" in audit[-1].cause
    [record] = await world.store.supplements_of(world.sibling_id)
    assert (record.supplement.state, record.supplement.amount_held) == (HoldState.STOPPED, 25_000)

    # The same answer again (a repeated callback, an inquiry) counts once.
    again = await world.dispatcher.supplements.record_answer(
        world.sibling_id, 1, stopped(25_000), actor="institution:PI02"
    )
    assert again is AnswerOutcome.REPEATED
    assert world.sibling.amount_stopped == 45_000


async def test_a_retry_after_a_timeout_asks_again_with_the_same_key() -> None:
    world = World(
        [stopped(40_000, *to_sibling(30_000))],
        [stopped(20_000), InstitutionTimeout("slow"), stopped(30_000)],
    )
    await stopped_then_merged(world)
    await world.consume_outbox()
    assert world.sibling.amount_stopped == 20_000
    await world.sweep(10)
    asked = supplement_requests(world)
    assert len(asked) == 2
    assert {r.idempotency_key for r in asked} == {f"stopper-{world.sibling_id}-s1"}
    assert (world.sibling.amount_stopped, world.sibling.amount_asked) == (50_000, 50_000)


async def test_two_merges_ask_two_supplements_under_two_keys() -> None:
    world = World(
        [stopped(40_000, *to_sibling(30_000, 10_000))],
        [stopped(20_000), stopped(30_000), stopped(10_000)],
    )
    await stopped_then_merged(world)
    await world.consume_outbox()
    asked = supplement_requests(world)
    assert sorted((r.idempotency_key, r.amount) for r in asked) == [
        (f"stopper-{world.sibling_id}-s1", 30_000),
        (f"stopper-{world.sibling_id}-s2", 10_000),
    ]
    assert (world.sibling.supplements, world.sibling.amount_stopped) == (2, 60_000)


async def test_a_requested_hold_needs_no_supplement_its_request_asks_for_the_raised_amount() -> (
    None
):
    world = World([stopped(40_000, *to_sibling(30_000))], [stopped(50_000)])
    await world.dispatcher.attempt(world.parent.hold.id, first=True)
    assert (world.sibling.state, world.sibling.amount_first_request) == (
        HoldState.REQUESTED,
        50_000,
    )
    assert not [m for m in world.store.outbox if m.payload.get("supplement")]
    await world.dispatcher.attempt(world.sibling_id, first=True)
    [asked] = world.sibling_requests()
    assert (asked.amount, asked.supplement) == (50_000, None)
    assert world.sibling.amount_stopped == 50_000
    assert world.sibling.supplements == 0


async def test_a_sent_hold_keeps_its_first_amount_and_answers_add_up_in_any_order() -> None:
    world = World(
        [stopped(40_000, *to_sibling(30_000))],
        [InstitutionTimeout("slow"), stopped(30_000), stopped(20_000)],
    )
    await world.dispatcher.attempt(world.sibling_id, first=True)  # out, its answer lost
    await world.dispatcher.attempt(world.parent.hold.id, first=True)
    assert world.sibling.state is HoldState.SENT
    await world.consume_outbox()  # the supplement answers before the first request's retry
    assert (world.sibling.state, world.sibling.amount_stopped) == (HoldState.SENT, 30_000)
    await world.sweep(10)
    firsts = [r for r in world.sibling_requests() if r.supplement is None]
    assert {r.amount for r in firsts} == {20_000}  # a retry never asks for more, same key
    sibling = world.sibling
    assert (sibling.state, sibling.amount_stopped, sibling.amount_stopped_by_first) == (
        HoldState.STOPPED,
        50_000,
        20_000,
    )
    # The first request's answer again changes nothing either.
    again = await world.dispatcher.record_answer(
        world.sibling_id, stopped(20_000), actor="institution:PI02"
    )
    assert again is AnswerOutcome.REPEATED and world.sibling.amount_stopped == 50_000


async def test_a_supplement_given_up_leaves_the_stop_standing_and_tells_people() -> None:
    failed_before = SUPPLEMENTS.labels("PI02", "failed")._value.get()
    world = World(
        [stopped(40_000, *to_sibling(30_000))],
        [stopped(20_000), InstitutionUnavailable("503")],
    )
    await stopped_then_merged(world)
    await world.consume_outbox()
    await world.sweep(200)
    sibling = world.store.holds[world.sibling_id]
    assert (sibling.hold.state, sibling.hold.amount_stopped) == (HoldState.STOPPED, 20_000)
    reason = sibling.state_reason or ""
    assert "supplement 1 (30000 more" in reason and "a person must ask PI02" in reason
    assert "what is held so far (20000) stands" in reason
    assert world.events()[-1] is HoldEvent.SUPPLEMENT_FAILED
    [record] = await world.store.supplements_of(world.sibling_id)
    assert record.supplement.state is HoldState.FAILED
    assert SUPPLEMENTS.labels("PI02", "failed")._value.get() == failed_before + 1
    # A late truth still counts: the institution did hold it after all.
    late = await world.dispatcher.supplements.record_answer(
        world.sibling_id, 1, stopped(30_000), actor="institution:PI02"
    )
    assert late is AnswerOutcome.APPLIED and world.sibling.amount_stopped == 50_000


@pytest.mark.parametrize("kind", [AnswerKind.NOT_FOUND, AnswerKind.REJECTED])
async def test_a_refused_supplement_is_final_and_the_stop_stands(kind: AnswerKind) -> None:
    world = World(
        [stopped(40_000, *to_sibling(30_000))],
        [stopped(20_000), InstitutionAnswer(kind, reason="not here")],
    )
    await stopped_then_merged(world)
    await world.consume_outbox()
    await world.sweep(30)
    assert len(supplement_requests(world)) == 1
    sibling = world.store.holds[world.sibling_id]
    assert (sibling.hold.state, sibling.hold.amount_stopped) == (HoldState.STOPPED, 20_000)
    assert f"supplement 1 (30000 more) {kind.value} (not here)" in (sibling.state_reason or "")
    assert world.events()[-1] is HoldEvent.SUPPLEMENT_REFUSED


def _callback(world: World, key: str, held: int, nonce: str) -> tuple[dict[str, str], bytes]:
    body = json.dumps(
        {
            "hold_id": str(world.sibling_id),
            "idempotency_key": key,
            "status": "stopped",
            "amount_held": held,
            "answered_at": NOW.isoformat(),
        }
    ).encode()
    headers = signed_headers("secret-PI02", int(NOW.timestamp()), nonce, body)
    return {k.lower(): v for k, v in headers.items()}, body


async def test_an_accepted_supplement_is_answered_by_a_callback_with_its_own_key() -> None:
    accepted = InstitutionAnswer(AnswerKind.ACCEPTED)
    world = World([stopped(40_000, *to_sibling(30_000))], [stopped(20_000), accepted])
    await stopped_then_merged(world)
    await world.consume_outbox()
    [record] = await world.store.supplements_of(world.sibling_id)
    assert record.supplement.state is HoldState.UNCONFIRMED
    assert world.sibling.state is HoldState.STOPPED  # the hold's own state never moves
    handler = CallbackHandler(world.dispatcher, REGISTRY, world.clock, SECRETS, window_s=300)
    key = supplement_key_for(world.sibling_id, 1)
    headers, body = _callback(world, key, 30_000, "nonce-supplement-1")
    result = await handler.handle("PI02", headers, body)
    assert result.outcome is AnswerOutcome.APPLIED
    assert world.sibling.amount_stopped == 50_000
    with pytest.raises(CallbackRefused) as replayed:
        await handler.handle("PI02", headers, body)
    assert replayed.value.reason.value == "replayed"
    _, other_body = _callback(world, key, 30_000, "nonce-supplement-2")
    other = signed_headers("secret-BK01", int(NOW.timestamp()), "nonce-supplement-3", other_body)
    with pytest.raises(CallbackRefused) as elsewhere:
        await handler.handle("BK01", {k.lower(): v for k, v in other.items()}, other_body)
    assert elsewhere.value.reason.value == "not_sent_here"
    assert world.sibling.amount_stopped == 50_000
    assert HoldEvent.SUPPLEMENT_ACCEPTED in world.events()


async def test_an_accepted_supplement_is_asked_about_and_sent_again_only_if_never_received() -> (
    None
):
    accepted = InstitutionAnswer(AnswerKind.ACCEPTED)
    world = World(
        [stopped(40_000, *to_sibling(30_000))], [stopped(20_000), accepted, stopped(30_000)]
    )
    key = supplement_key_for(world.sibling_id, 1)
    world.adapter.status_script["PI02"] = [
        StopStatus(key, StatusKind.PENDING, world.sibling_id),
        StopStatus(key, StatusKind.UNKNOWN),
    ]
    await stopped_then_merged(world)
    await world.consume_outbox()
    await world.sweep(120)
    assert world.adapter.statuses.count(key) == 2
    asked = supplement_requests(world)
    assert [r.idempotency_key for r in asked] == [key, key]
    assert world.sibling.amount_stopped == 50_000


async def test_a_supplement_of_a_stop_re_applied_before_it_left_is_not_sent() -> None:
    world = World([stopped(40_000, *to_sibling(30_000))], [stopped(20_000), stopped(50_000)])
    await stopped_then_merged(world)

    def reapply(record: HoldRecord) -> HoldUpdate:
        moved = record.hold.apply(HoldEvent.REAPPLIED, cause="test", actor="test", at=NOW)
        return HoldUpdate(at=NOW, transitions=[moved])

    await world.store.update_hold(world.sibling_id, reapply)
    assert world.sibling.amount_first_request == 50_000
    await world.consume_outbox()
    assert supplement_requests(world) == []
    [record] = await world.store.supplements_of(world.sibling_id)
    assert record.supplement.state is HoldState.FAILED
    assert "re-applied" in (record.state_reason or "")
    await world.dispatcher.attempt(world.sibling_id, first=False)
    [renewed] = [r for r in world.sibling_requests() if r.generation == 1]
    assert (renewed.amount, renewed.supplement) == (50_000, None)


async def test_reconciliation_finds_what_became_of_a_supplement_whose_callback_was_lost() -> None:
    accepted = InstitutionAnswer(AnswerKind.ACCEPTED)
    world = World([stopped(40_000, *to_sibling(30_000))], [stopped(20_000), accepted])
    await stopped_then_merged(world)
    await world.consume_outbox()
    key = supplement_key_for(world.sibling_id, 1)
    world.adapter.status_script["PI02"] = [
        StopStatus(key, StatusKind.ANSWERED, world.sibling_id, stopped(28_000))
    ]
    world.clock.at += timedelta(seconds=REGISTRY["PI02"].callback_wait_s + 1)
    report = await Reconciler(world.store, world.dispatcher, world.clock).reconcile("PI02")
    assert report.total()["applied"] == 1
    assert world.sibling.amount_stopped == 48_000
    assert [d.stopper_state for d in world.store.divergences] == ["unconfirmed"]


def second_request(world: World) -> dict[str, object]:
    """What supplement 2's outbox record says it is."""
    [record] = [s for s in world.store.supplements.values() if s.supplement.number == 2]
    return {
        "number": 2,
        "adds_to": f"stopper-{world.sibling_id}-0",
        "merged_from_hold_id": str(record.supplement.merged_from),
    }


def _numbers(requests: Sequence[StopRequestV1]) -> list[int]:
    return [r.supplement.number for r in requests if r.supplement is not None]


async def test_a_hold_s_supplements_are_numbered_on_across_merges_of_later_answers() -> None:
    world = World(
        [stopped(40_000, *to_sibling(30_000))],
        [stopped(20_000), stopped(30_000), stopped(5_000)],
    )
    await stopped_then_merged(world)
    await world.consume_outbox()
    # Another hold of the case sends money there later: supplement 2.
    third = Hold(uuid4(), world.parent.hold.case_id, "BK03", "6222000099998888", "CNY", 9_000)
    world.store.add(new_record(third, NOW, NOW))
    world.adapter.script["BK03"] = [stopped(4_000, *to_sibling(5_000))]
    await world.dispatcher.attempt(third.id, first=True)
    world.store.outbox = [  # what the consumer has not read yet: supplement 2's request
        m for m in world.store.outbox if m.payload.get("supplement") == second_request(world)
    ]
    await world.consume_outbox()
    assert _numbers(supplement_requests(world)) == [1, 2]
    [_, second] = await world.store.supplements_of(world.sibling_id)
    assert second.supplement.merged_from == third.id
    assert world.sibling.amount_stopped == 55_000


# --- a supplement none of whose attempts was answered ---------------------------------------


# PI02 making three attempts within 20 s, its breaker closed: each attempt meets PI02 itself.
THREE_TRIES = Registry(
    {
        **REGISTRY.institutions,
        "PI02": replace(
            REGISTRY["PI02"],
            retry=RetryPolicy(
                max_attempts=3, initial_backoff_ms=500, max_backoff_ms=2000, deadline_s=20
            ),
            breaker=BreakerPolicy(failure_threshold=100, cooldown_s=30),
        ),
    }
)


async def unanswered_supplement(status: list[StopStatus | InstitutionError]) -> World:
    """The sibling stopped, then a supplement each of whose three attempts at PI02 timed out;
    `status` scripts the inquiries about it. Swept until it is no longer being sent."""
    world = World(
        [stopped(40_000, *to_sibling(30_000))],
        [stopped(20_000), InstitutionTimeout("no answer in 1500 ms")],
        THREE_TRIES,
    )
    world.adapter.status_script["PI02"] = status
    await stopped_then_merged(world)
    await world.consume_outbox()
    for _ in range(30):
        [record] = await world.store.supplements_of(world.sibling_id)
        if record.supplement.state is not HoldState.SENT:
            break
        await world.sweep(1)
    return world


async def test_a_supplement_whose_attempts_all_timed_out_is_asked_about_before_it_may_fail() -> (
    None
):
    """No answer is not a refusal, for a supplement as for a hold: PI02 may have held it."""
    failed_before = SUPPLEMENTS.labels("PI02", "failed")._value.get()
    world = await unanswered_supplement([])
    [record] = await world.store.supplements_of(world.sibling_id)
    assert record.supplement.state is HoldState.UNCONFIRMED
    assert record.accepted_at is None  # not accepted: unanswered
    assert "attempt 3: no answer in 1500 ms" in (record.state_reason or "")
    assert world.events()[-1] is HoldEvent.SUPPLEMENT_UNANSWERED
    assert world.sibling.state is HoldState.STOPPED  # the hold's own stop stands, untouched
    assert len(supplement_requests(world)) == 3
    assert world.adapter.statuses == []  # not before the last attempt's answer would have come

    await asked_about_and_found_held(world, requests=3)
    assert world.events()[-2:] == [HoldEvent.SUPPLEMENT_UNANSWERED, HoldEvent.SUPPLEMENT_STOPPED]
    assert SUPPLEMENTS.labels("PI02", "failed")._value.get() == failed_before


async def asked_about_and_found_held(world: World, requests: int) -> None:
    """PI02's record says it holds the supplement's 30,000: the next inquiry finds that, and
    the supplement is stopped with no request sent again (`requests` made in all)."""
    key = supplement_key_for(world.sibling_id, 1)
    world.adapter.status_script["PI02"] = [
        StopStatus(key, StatusKind.ANSWERED, world.sibling_id, stopped(30_000))
    ]
    await world.sweep(3)
    assert world.adapter.statuses == [key]
    [record] = await world.store.supplements_of(world.sibling_id)
    assert record.supplement.state is HoldState.STOPPED
    assert world.sibling.amount_stopped == 50_000
    assert len(supplement_requests(world)) == requests


@pytest.mark.parametrize(
    ("inquiry", "reason"),
    [
        (
            "unknown",
            "the institution has no record of it: none of 3 unanswered attempts reached it",
        ),
        ("silent", "no answer to 3 attempts, nor to "),
    ],
)
async def test_an_unanswered_supplement_fails_only_if_never_received_or_never_answered(
    inquiry: str, reason: str
) -> None:
    failed_before = SUPPLEMENTS.labels("PI02", "failed")._value.get()
    world = await unanswered_supplement([InstitutionTimeout("silent")])
    if inquiry == "unknown":
        key = supplement_key_for(world.sibling_id, 1)
        world.adapter.status_script["PI02"] = [StopStatus(key, StatusKind.UNKNOWN)]
    [before] = await world.store.supplements_of(world.sibling_id)
    assert before.dispatch_deadline_at is not None
    await world.sweep(int((before.dispatch_deadline_at - world.clock.at).total_seconds()) + 2)
    [record] = await world.store.supplements_of(world.sibling_id)
    assert record.supplement.state is HoldState.FAILED
    assert (record.state_reason or "").startswith(reason)
    assert world.events()[-1] is HoldEvent.SUPPLEMENT_FAILED
    assert reason in (world.store.holds[world.sibling_id].state_reason or "")
    assert (world.sibling.state, world.sibling.amount_stopped) == (HoldState.STOPPED, 20_000)
    assert len(supplement_requests(world)) == 3  # its budget is spent: not sent again
    assert SUPPLEMENTS.labels("PI02", "failed")._value.get() == failed_before + 1


async def test_an_unanswered_supplement_the_institution_has_pending_is_owed_its_answer() -> None:
    world = await unanswered_supplement([])  # an inquiry answers pending by default
    [unanswered] = await world.store.supplements_of(world.sibling_id)
    await world.sweep(3)
    [pending] = await world.store.supplements_of(world.sibling_id)
    assert pending.supplement.state is HoldState.UNCONFIRMED
    assert pending.accepted_at is not None  # at the inquiry
    assert unanswered.next_attempt_at is not None
    assert unanswered.next_attempt_at <= pending.accepted_at <= world.clock.at
    assert "the institution has the request (pending" in (pending.state_reason or "")
    # Its answer is owed as for a supplement accepted at once: asked about until the stop lapses.
    assert pending.dispatch_deadline_at == pending.accepted_at + timedelta(hours=48)
    await world.sweep(600)
    [later] = await world.store.supplements_of(world.sibling_id)
    assert later.supplement.state is HoldState.UNCONFIRMED
    assert len(supplement_requests(world)) == 3


async def after_two_timed_out_attempts() -> World:
    """The sibling stopped, then a supplement whose first two attempts at PI02 timed out, its
    third (the last THREE_TRIES allows) not yet made."""
    world = World(
        [stopped(40_000, *to_sibling(30_000))],
        [stopped(20_000), InstitutionTimeout("no answer in 1500 ms")],
        THREE_TRIES,
    )
    await stopped_then_merged(world)
    await world.consume_outbox()
    for _ in range(30):
        [record] = await world.store.supplements_of(world.sibling_id)
        if record.attempts == 2:
            break
        await world.sweep(1)
    assert record.supplement.state is HoldState.SENT
    assert len(supplement_requests(world)) == 2
    return world


async def test_a_supplement_whose_last_attempt_s_lease_ran_out_is_asked_about_not_given_up() -> (
    None
):
    """The process making the last attempt died before recording its outcome: the request may
    have reached PI02, so the supplement is unanswered and asked about, never failed at claim."""
    world = await after_two_timed_out_attempts()
    [record] = await world.store.supplements_of(world.sibling_id)
    assert record.next_attempt_at is not None
    world.clock.at = record.next_attempt_at
    claim = await world.dispatcher.supplements.claim(world.sibling_id, 1, first=False)
    assert claim is not None and claim.attempt == 3  # then: killed before it was made
    [claimed] = await world.store.supplements_of(world.sibling_id)
    assert claimed.next_attempt_at is not None
    world.clock.at = claimed.next_attempt_at + timedelta(seconds=1)
    await world.dispatcher.sweep_once()
    await world.dispatcher.wait_idle()

    [record] = await world.store.supplements_of(world.sibling_id)
    assert record.supplement.state is HoldState.UNCONFIRMED
    assert "attempt 3: no outcome recorded before its lease ran out" in (record.state_reason or "")
    assert world.events()[-1] is HoldEvent.SUPPLEMENT_UNANSWERED
    assert len(supplement_requests(world)) == 2  # no attempt is left, so none is made
    assert world.adapter.statuses == []  # asked once that attempt's answer would have come
    await asked_about_and_found_held(world, requests=2)


async def test_a_supplement_retry_due_before_its_deadline_is_made_when_reached_late() -> None:
    """The retry fell due in time and the sweeper reached it after the deadline (a starved
    process): the lateness is Stopper's, so the attempt is made, as for a hold."""
    world = World(
        [stopped(40_000, *to_sibling(30_000))],
        [stopped(20_000), InstitutionTimeout("no answer in 1500 ms"), stopped(30_000)],
        THREE_TRIES,
    )
    await stopped_then_merged(world)
    await world.consume_outbox()
    [record] = await world.store.supplements_of(world.sibling_id)
    assert record.attempts == 1 and record.supplement.state is HoldState.SENT
    assert record.next_attempt_at is not None and record.dispatch_deadline_at is not None
    assert record.next_attempt_at < record.dispatch_deadline_at
    world.clock.at = record.dispatch_deadline_at + timedelta(seconds=5)
    await world.dispatcher.sweep_once()
    await world.dispatcher.wait_idle()

    assert len(supplement_requests(world)) == 2
    [record] = await world.store.supplements_of(world.sibling_id)
    assert record.supplement.state is HoldState.STOPPED
    assert world.sibling.amount_stopped == 50_000
