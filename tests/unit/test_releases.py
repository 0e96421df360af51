"""Releases with hand-written fakes: a hold lifted at its institution (once per key, retried like
a stop, given up for a person), a request that never left dropped without asking, a stop still
under way not left to stop the money, and a withdrawn case released hold by hold."""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace
from datetime import timedelta
from uuid import uuid4

import prometheus_client

from stopper.app.dispatch import Dispatcher
from stopper.app.gateway import InstitutionGateway
from stopper.app.ports import HoldRecord
from stopper.app.releases import ReleaseDesk, ReleaseGround, ReleaseOutcome
from stopper.config import DispatchSettings
from stopper.contracts.institutions import ReleaseAnswerV1
from stopper.domain.holds import HoldEvent, HoldState
from stopper.domain.messages import AnswerKind, InstitutionAnswer, RequestStop
from stopper.errors import InstitutionTimeout, InstitutionUnavailable
from stopper.registry import BreakerPolicy, Institution, Registry, load_registry
from tests.unit.fakes import (
    FakeDispatchStore,
    FixedClock,
    ScriptedAdapter,
    new_record,
    requested_hold,
)

# BK01's breaker stays closed here: the breaker's cooldown is real time, the tests' clock is not
# (an open breaker is the gateway's to test).
_BASE = load_registry()
REGISTRY = Registry(
    {
        **_BASE.institutions,
        "BK01": replace(_BASE["BK01"], breaker=BreakerPolicy(failure_threshold=1000, cooldown_s=1)),
    }
)
CLEARED = ReleaseGround.ACCOUNT_CLEARED
ACTOR = "operator:li.wei (key:k1)"


def desk(
    adapter: ScriptedAdapter | None = None,
) -> tuple[ReleaseDesk, FakeDispatchStore, ScriptedAdapter, FixedClock]:
    store = FakeDispatchStore()
    adapter = adapter or ScriptedAdapter({"BK01": [InstitutionAnswer(AnswerKind.STOPPED, 8_000)]})
    clock = FixedClock(requested_hold().requested_at)
    gateway = InstitutionGateway(adapter, REGISTRY, hedge=False, rng=random.Random(5))
    return ReleaseDesk(store, gateway, clock, random.Random(3)), store, adapter, clock


def in_state(clock: FixedClock, *events: HoldEvent, held: int = 8_000) -> HoldRecord:
    record = requested_hold(amount=10_000, at=clock.at)
    for event in events:
        amount = {HoldEvent.STOP_CONFIRMED: held, HoldEvent.FREEZE_CONFIRMED: held}.get(event)
        record.hold.apply(event, cause="t", actor="t", at=clock.at, amount=amount)
    return record


STOPPED = (HoldEvent.REQUEST_SENT, HoldEvent.STOP_CONFIRMED)


async def sweep(releases: ReleaseDesk, clock: FixedClock, seconds: int) -> None:
    for _ in range(seconds):
        clock.at += timedelta(seconds=1)
        await releases.sweep_once()


def orders_left(outcome: str) -> float:
    """`stopper_orders_left_total` for releases with `outcome`, as scraped."""
    value = prometheus_client.REGISTRY.get_sample_value(
        "stopper_orders_left_total", {"order": "release", "outcome": outcome}
    )
    return value or 0.0


async def test_a_stopped_hold_is_released_when_its_institution_confirms() -> None:
    releases, store, adapter, clock = desk()
    record = in_state(clock, *STOPPED)
    store.add(record)
    adapter.held[record.hold.id] = 8_000
    result = await releases.release(
        record.hold.id, ground=CLEARED, reason="the bank cleared the account", actor=ACTOR
    )
    assert (result.outcome, result.state) == (ReleaseOutcome.ORDERED, HoldState.RELEASING)
    await releases.wait_idle()
    stored = store.holds[record.hold.id]
    assert stored.hold.state is HoldState.RELEASED
    [request] = adapter.releases
    assert (request.idempotency_key, request.ground, request.generation) == (
        f"stopper-release-{record.hold.id}",
        "account_cleared",
        0,
    )
    ordered, confirmed = store.transitions[-2:]
    # The audit names who and why, then the institution that lifted it.
    assert (ordered.event, ordered.actor) == (HoldEvent.RELEASE_ORDERED, ACTOR)
    assert "the bank cleared the account" in ordered.cause
    assert (confirmed.event, confirmed.actor) == (
        HoldEvent.RELEASE_CONFIRMED,
        "institution:BK01",
    )
    assert "8000 no longer held" in confirmed.cause
    # The agency hears of it once, as `hold_released`.
    told = [m.payload for m in store.outbox if m.topic == store.case_events_topic]
    assert [e["type"] for e in told] == ["hold_released"]
    assert told[0]["data"]["from_state"] == "releasing"  # type: ignore[index]


async def test_a_request_that_never_left_is_released_at_once_without_asking() -> None:
    releases, store, adapter, _ = desk()
    record = requested_hold()
    store.add(record)
    result = await releases.release(record.hold.id, ground=CLEARED, reason="r", actor=ACTOR)
    await releases.wait_idle()
    assert (result.outcome, result.state) == (ReleaseOutcome.CANCELLED, HoldState.RELEASED)
    assert adapter.releases == []
    assert store.transitions[-1].event is HoldEvent.REQUEST_CANCELLED
    assert store.holds[record.hold.id].release_next_attempt_at is None


async def test_a_re_applied_request_is_released_at_its_institution() -> None:
    releases, store, adapter, clock = desk()
    record = in_state(clock, *STOPPED, HoldEvent.REAPPLIED)
    store.add(record)
    result = await releases.release(record.hold.id, ground=CLEARED, reason="r", actor=ACTOR)
    await releases.wait_idle()
    assert result.outcome is ReleaseOutcome.ORDERED
    assert [r.generation for r in adapter.releases] == [1]
    assert store.holds[record.hold.id].hold.state is HoldState.RELEASED


async def test_failures_are_retried_with_the_same_key_and_released_once() -> None:
    adapter = ScriptedAdapter({})
    adapter.release_script["BK01"] = [
        InstitutionTimeout("slow"),
        InstitutionUnavailable("HTTP 503"),
        ReleaseAnswerV1(status="released", amount_released=8_000),
    ]
    releases, store, adapter, clock = desk(adapter)
    record = in_state(clock, *STOPPED)
    store.add(record)
    await releases.release(record.hold.id, ground=CLEARED, reason="r", actor=ACTOR)
    await releases.wait_idle()
    assert store.holds[record.hold.id].hold.state is HoldState.RELEASING
    assert "release attempt 1" in (store.holds[record.hold.id].state_reason or "")
    await sweep(releases, clock, 60)
    assert store.holds[record.hold.id].hold.state is HoldState.RELEASED
    assert len(adapter.releases) == 3
    assert {r.idempotency_key for r in adapter.releases} == {f"stopper-release-{record.hold.id}"}
    assert [t.event for t in store.transitions].count(HoldEvent.RELEASE_CONFIRMED) == 1


async def test_a_release_that_keeps_failing_is_left_releasing_for_a_person_then_sent_again() -> (
    None
):
    adapter = ScriptedAdapter({})
    adapter.release_script["BK01"] = [InstitutionUnavailable("HTTP 503")]
    releases, store, adapter, clock = desk(adapter)
    record = in_state(clock, *STOPPED, HoldEvent.FREEZE_CONFIRMED)
    store.add(record)
    left_before = orders_left("gave_up")
    await releases.release(record.hold.id, ground=CLEARED, reason="r", actor=ACTOR)
    await sweep(releases, clock, 600)
    stored = store.holds[record.hold.id]
    max_attempts = REGISTRY["BK01"].retry.max_attempts
    assert orders_left("gave_up") == left_before + 1, "counted once, when the last attempt failed"
    assert stored.hold.state is HoldState.RELEASING
    assert stored.release_next_attempt_at is None and stored.release_attempts == max_attempts
    assert (stored.state_reason or "").endswith("a person must act")
    assert len(adapter.releases) == max_attempts

    # The institution is back; a person asks again: the very same request, released once.
    adapter.release_script["BK01"] = [ReleaseAnswerV1(status="released", amount_released=0)]
    again = await releases.release(record.hold.id, ground=CLEARED, reason="again", actor=ACTOR)
    await releases.wait_idle()
    assert again.outcome is ReleaseOutcome.RESENT
    assert store.holds[record.hold.id].hold.state is HoldState.RELEASED
    assert {r.idempotency_key for r in adapter.releases} == {f"stopper-release-{record.hold.id}"}


async def test_a_refusal_is_left_for_a_person_and_nothing_else_is_released() -> None:
    adapter = ScriptedAdapter({})
    adapter.release_script["BK01"] = [
        ReleaseAnswerV1(status="rejected", reason="held under a court order")
    ]
    releases, store, _, clock = desk(adapter)
    record = in_state(clock, *STOPPED)
    store.add(record)
    left_before = orders_left("refused")
    await releases.release(record.hold.id, ground=CLEARED, reason="r", actor=ACTOR)
    await releases.wait_idle()
    stored = store.holds[record.hold.id]
    assert orders_left("refused") == left_before + 1
    assert stored.hold.state is HoldState.RELEASING and stored.release_next_attempt_at is None
    assert "held under a court order" in (stored.state_reason or "")
    # Ordered twice while under way: not ordered again.
    under_way = in_state(clock, *STOPPED)
    store.add(under_way)
    adapter.release_script["BK01"] = [InstitutionTimeout("slow")]
    await releases.release(under_way.hold.id, ground=CLEARED, reason="r", actor=ACTOR)
    await releases.wait_idle()
    twice = await releases.release(under_way.hold.id, ground=CLEARED, reason="r", actor=ACTOR)
    assert twice.outcome is ReleaseOutcome.ALREADY_ORDERED


async def test_holds_whose_money_is_going_out_or_that_are_over_are_not_released() -> None:
    releases, store, adapter, clock = desk()
    cases = {
        "returning": in_state(
            clock, *STOPPED, HoldEvent.FREEZE_CONFIRMED, HoldEvent.RETURN_STARTED
        ),
        "not_found": in_state(clock, HoldEvent.REQUEST_SENT, HoldEvent.NOT_FOUND),
        "released": in_state(clock, HoldEvent.REQUEST_CANCELLED),
    }
    for record in cases.values():
        store.add(record)
    for name, record in cases.items():
        result = await releases.release(record.hold.id, ground=CLEARED, reason="r", actor=ACTOR)
        assert result.outcome is ReleaseOutcome.NOT_ALLOWED, name
        assert result.reason is not None and result.reason.startswith(f"the hold is {name}")
    unknown = await releases.release(uuid4(), ground=CLEARED, reason="r", actor=ACTOR)
    assert unknown.outcome is ReleaseOutcome.UNKNOWN_HOLD
    assert adapter.releases == []


async def test_a_withdrawn_case_releases_every_hold_it_may() -> None:
    releases, store, adapter, clock = desk()
    first = in_state(clock, *STOPPED)
    case_id = first.hold.case_id

    def of_case(*events: HoldEvent) -> HoldRecord:
        record = in_state(clock, *events)
        record.hold.case_id = case_id
        return record

    holds = {
        "stopped": first,
        "never_sent": of_case(),
        "unconfirmed": of_case(HoldEvent.REQUEST_SENT, HoldEvent.ACCEPTED),
        "not_found": of_case(HoldEvent.REQUEST_SENT, HoldEvent.NOT_FOUND),
    }
    for record in holds.values():
        store.add(record)
    other = in_state(clock, *STOPPED)  # another case's hold: left alone
    store.add(other)
    withdrawal = await releases.withdraw(case_id, reason="complaint withdrawn", actor=ACTOR)
    await releases.wait_idle()
    assert withdrawal is not None
    outcome = {h.hold_id: h.outcome for h in withdrawal.holds}
    assert outcome == {
        holds["stopped"].hold.id: ReleaseOutcome.ORDERED,
        holds["never_sent"].hold.id: ReleaseOutcome.CANCELLED,
        holds["unconfirmed"].hold.id: ReleaseOutcome.ORDERED,
        holds["not_found"].hold.id: ReleaseOutcome.NOT_ALLOWED,
    }
    assert [s.hold_id for s in withdrawal.skipped] == [holds["not_found"].hold.id]
    assert {r.hold_id for r in adapter.releases} == {
        holds["stopped"].hold.id,
        holds["unconfirmed"].hold.id,
    }
    assert {r.ground for r in adapter.releases} == {"report_withdrawn"}
    states = {name: store.holds[r.hold.id].hold.state for name, r in holds.items()}
    assert states == {
        "stopped": HoldState.RELEASED,
        "never_sent": HoldState.RELEASED,
        "unconfirmed": HoldState.RELEASED,
        "not_found": HoldState.NOT_FOUND,
    }
    assert store.holds[other.hold.id].hold.state is HoldState.STOPPED
    assert await releases.withdraw(uuid4(), reason="r", actor=ACTOR) is None


class GatedStops(ScriptedAdapter):
    """Stop requests wait until `gate` is set (`sent` is set once one is out); releases answer
    at once."""

    def __init__(self) -> None:
        super().__init__({"BK01": [InstitutionAnswer(AnswerKind.STOPPED, 8_000)]})
        self.gate = asyncio.Event()
        self.sent = asyncio.Event()

    async def request_stop(
        self, institution: Institution, request: RequestStop
    ) -> InstitutionAnswer:
        self.requests.append(request)
        self.sent.set()
        await self.gate.wait()
        return InstitutionAnswer(AnswerKind.STOPPED, 8_000)


async def test_a_stop_under_way_when_released_neither_applies_nor_is_sent_again() -> None:
    adapter = GatedStops()
    store = FakeDispatchStore()
    clock = FixedClock(requested_hold().requested_at)
    gateway = InstitutionGateway(adapter, REGISTRY, hedge=False, rng=random.Random(5))
    dispatcher = Dispatcher(store, gateway, clock, DispatchSettings().policy(), random.Random(1))
    releases = ReleaseDesk(store, gateway, clock, random.Random(3))
    hold = requested_hold(at=clock.at).hold
    store.add(new_record(hold, clock.at, clock.at))
    attempt = asyncio.create_task(dispatcher.attempt(hold.id, first=True))
    await adapter.sent.wait()
    assert store.holds[hold.id].hold.state is HoldState.SENT  # the stop request is out
    result = await releases.release(hold.id, ground=CLEARED, reason="r", actor=ACTOR)
    assert result.outcome is ReleaseOutcome.ORDERED  # not cancelled: it may be at the bank
    adapter.gate.set()  # the stop's answer arrives after the release was ordered
    await attempt
    await releases.wait_idle()
    for _ in range(120):
        clock.at += timedelta(seconds=1)
        await dispatcher.sweep_once()
        await dispatcher.wait_idle()
    assert store.holds[hold.id].hold.state is HoldState.RELEASED
    assert len(adapter.requests) == 1  # nothing more sent for the stop
    assert HoldEvent.STOP_CONFIRMED not in [t.event for t in store.transitions]
