"""Returning frozen funds to victims, with hand-written fakes."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import timedelta
from uuid import UUID

from stopper.app.gateway import InstitutionGateway
from stopper.app.ports import HoldRecord, VictimTransfer
from stopper.app.returns import ReturnDesk
from stopper.contracts.institutions import ReturnAnswerV1
from stopper.domain.holds import Hold, HoldEvent, HoldState
from stopper.domain.messages import OnwardKind, OnwardTransfer
from stopper.domain.trail import EdgeOutcome, TrailEdge
from stopper.errors import InstitutionError, InstitutionTimeout
from stopper.registry import BreakerPolicy, Registry, load_registry
from tests.unit.fakes import FakeDispatchStore, FixedClock, ScriptedAdapter, new_record

REGISTRY = load_registry()
CASE = UUID(int=77)


def frozen(clock: FixedClock, frozen: int, *, layer: int = 1, code: str = "BK01") -> HoldRecord:
    hold = Hold(
        id=UUID(int=1000 + layer * 10 + frozen % 7),
        case_id=CASE,
        institution_code=code,
        account_number=f"62220000{layer}{frozen}",
        currency="CNY",
        amount_asked=frozen,
        layer=layer,
    )
    for event, amount in (
        (HoldEvent.REQUEST_SENT, None),
        (HoldEvent.STOP_CONFIRMED, frozen),
        (HoldEvent.FREEZE_CONFIRMED, frozen),
    ):
        hold.apply(event, cause="t", actor="t", at=clock.at, amount=amount)
    return new_record(hold, clock.at, clock.at)


def paid_in(store: FakeDispatchStore, victim: str, hold: HoldRecord, amount: int) -> None:
    store.transfers.append(
        VictimTransfer(victim, hold.hold.id, "CNY", amount, "BK09", f"955800{victim}0001")
    )


def desk(
    registry: Registry = REGISTRY,
) -> tuple[ReturnDesk, FakeDispatchStore, ScriptedAdapter, FixedClock]:
    store, adapter = FakeDispatchStore(), ScriptedAdapter({})
    clock = FixedClock()
    return (
        ReturnDesk(
            store, InstitutionGateway(adapter, registry, hedge=True), clock, random.Random(5)
        ),
        store,
        adapter,
        clock,
    )


async def test_one_account_with_two_victims_pays_each_pro_rata_to_their_own_account() -> None:
    returns, store, adapter, clock = desk()
    hold = frozen(clock, 60_000)
    store.add(hold)
    paid_in(store, "V1", hold, 100_000)
    paid_in(store, "V2", hold, 50_000)

    result = await returns.order(CASE, document_ref="RET-1", actor="operator:li")
    await returns.wait_idle()

    assert result is not None and not result.skipped
    [started] = result.started
    assert {p.victim_ref: p.amount for p in started.payouts} == {"V1": 40_000, "V2": 20_000}
    stored = store.holds[hold.hold.id]
    assert (stored.hold.state, stored.hold.amount_returned) == (HoldState.RETURNED, 60_000)
    [request] = adapter.returns
    assert request.idempotency_key == f"stopper-return-{hold.hold.id}-1"
    assert {(p.victim_ref, p.account_number, p.amount) for p in request.payouts} == {
        ("V1", "955800V10001", 40_000),
        ("V2", "955800V20001", 20_000),
    }
    assert {p.status for p in store.payouts} == {"paid"}
    assert [t.event for t in store.transitions] == [
        HoldEvent.RETURN_STARTED,
        HoldEvent.RETURN_CONFIRMED,
    ]


async def test_deeper_layers_pay_back_by_the_mix_they_inherited_never_more_than_lost() -> None:
    returns, store, _, clock = desk()
    first, second = frozen(clock, 10_000), frozen(clock, 20_000, layer=2, code="PI03")
    store.add(first)
    store.add(second)
    paid_in(store, "V1", first, 30_000)
    paid_in(store, "V2", first, 10_000)
    onward = OnwardTransfer(OnwardKind.TRANSFER, 30_000, clock.at, "PI03", "x")
    store.edges.append(
        TrailEdge(first.hold.id, second.hold.id, onward, 30_000, EdgeOutcome.FOLLOWED)
    )

    result = await returns.order(CASE, document_ref="RET-2", actor="operator:li")
    await returns.wait_idle()

    assert result is not None
    shares = {s.hold_id: {p.victim_ref: p.amount for p in s.payouts} for s in result.started}
    # A (layer 1) holds 100 of a 3:1 mix; B received 300 of the same mix and froze 200.
    assert shares[first.hold.id] == {"V1": 7_500, "V2": 2_500}
    assert shares[second.hold.id] == {"V1": 15_000, "V2": 5_000}
    assert store.holds[second.hold.id].hold.state is HoldState.RETURNED


async def test_a_refused_return_keeps_the_funds_frozen_and_a_new_order_is_a_new_round() -> None:
    returns, store, adapter, clock = desk()
    hold = frozen(clock, 5_000)
    store.add(hold)
    paid_in(store, "V1", hold, 5_000)
    adapter.return_script["BK01"] = [
        ReturnAnswerV1(status="rejected", reason="court order not yet received"),
        ReturnAnswerV1(status="returned", amount_returned=5_000),
    ]

    await returns.order(CASE, document_ref="RET-3", actor="operator:li")
    await returns.wait_idle()
    stored = store.holds[hold.hold.id]
    assert stored.hold.state is HoldState.FROZEN
    assert "court order not yet received" in (stored.state_reason or "")
    assert [p.status for p in store.payouts] == ["cancelled"]

    await returns.order(CASE, document_ref="RET-3b", actor="operator:li")
    await returns.wait_idle()
    assert store.holds[hold.hold.id].hold.state is HoldState.RETURNED
    assert [p.status for p in store.payouts] == ["cancelled", "paid"]
    assert [r.idempotency_key[-2:] for r in adapter.returns] == ["-1", "-2"]


async def test_an_unknown_outcome_is_left_for_a_person_who_resends_the_same_request() -> None:
    # The breaker's cooldown is real time, which this test does not advance: keep it closed so
    # that every attempt of the budget reaches the institution.
    bk01 = replace(REGISTRY["BK01"], breaker=BreakerPolicy(failure_threshold=100, cooldown_s=5))
    returns, store, adapter, clock = desk(Registry({**REGISTRY.institutions, "BK01": bk01}))
    hold = frozen(clock, 5_000)
    store.add(hold)
    paid_in(store, "V1", hold, 5_000)
    slow: list[ReturnAnswerV1 | InstitutionError] = [InstitutionTimeout("slow")] * 8
    adapter.return_script["BK01"] = [
        *slow,
        ReturnAnswerV1(status="returned", amount_returned=5_000),
    ]
    await returns.order(CASE, document_ref="RET-4", actor="operator:li")
    for _ in range(200):
        clock.at += timedelta(seconds=5)
        await returns.sweep_once()
    stored = store.holds[hold.hold.id]
    assert stored.hold.state is HoldState.RETURNING and stored.return_next_attempt_at is None
    assert "a person must act" in (stored.state_reason or "")
    tries = len(adapter.returns)
    assert tries == REGISTRY["BK01"].retry.max_attempts

    result = await returns.order(CASE, document_ref="RET-4", actor="operator:li")
    assert result is not None and result.started[0].resent
    for _ in range(200):
        clock.at += timedelta(seconds=5)
        await returns.sweep_once()
    assert store.holds[hold.hold.id].hold.state is HoldState.RETURNED
    assert {r.idempotency_key for r in adapter.returns} == {f"stopper-return-{hold.hold.id}-1"}
    assert len(store.payouts) == 1


async def test_nothing_is_paid_twice_and_nobody_beyond_what_they_lost() -> None:
    returns, store, adapter, clock = desk()
    first, second = frozen(clock, 8_000), frozen(clock, 9_000, layer=2, code="PI03")
    store.add(first)
    store.add(second)
    paid_in(store, "V1", first, 10_000)
    onward = OnwardTransfer(OnwardKind.TRANSFER, 9_000, clock.at, "PI03", "x")
    store.edges.append(
        TrailEdge(first.hold.id, second.hold.id, onward, 9_000, EdgeOutcome.FOLLOWED)
    )

    result = await returns.order(CASE, document_ref="RET-5", actor="operator:li")
    await returns.wait_idle()
    assert result is not None
    paid = {s.hold_id: (s.amount, s.unallocated) for s in result.started}
    assert paid == {first.hold.id: (8_000, 0), second.hold.id: (2_000, 7_000)}

    again = await returns.order(CASE, document_ref="RET-5", actor="operator:li")
    assert again is not None and not again.started
    assert set(again.skipped.values()) == {"the hold is returned, not frozen"}
    assert len(adapter.returns) == 2 and sum(p.amount for p in store.payouts) == 10_000


async def test_an_unknown_case_and_a_hold_of_another_case_are_told_apart() -> None:
    returns, store, _, clock = desk()
    assert await returns.order(UUID(int=5), document_ref="R", actor="operator:li") is None
    hold = frozen(clock, 1_000)
    store.add(hold)
    result = await returns.order(
        CASE, document_ref="R", actor="operator:li", hold_ids=[UUID(int=9)]
    )
    assert result is not None and result.skipped == {UUID(int=9): "no such hold in this case"}
