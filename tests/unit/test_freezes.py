"""Formal freezes with hand-written fakes."""

from __future__ import annotations

import random
from datetime import timedelta

from stopper.app.deadlines import DeadlineKeeper
from stopper.app.freezes import FreezeDesk, FreezeOrderOutcome
from stopper.app.gateway import InstitutionGateway
from stopper.app.ports import HoldRecord
from stopper.config import DeadlineSettings
from stopper.contracts.institutions import FreezeAnswerV1
from stopper.domain.holds import HoldEvent, HoldState
from stopper.errors import InstitutionTimeout
from stopper.registry import load_registry
from tests.unit.fakes import FakeDispatchStore, FixedClock, ScriptedAdapter, requested_hold

REGISTRY = load_registry()


def stopped(clock: FixedClock, held: int = 8_000) -> HoldRecord:
    record = requested_hold(amount=10_000, at=clock.at)
    record.hold.apply(HoldEvent.REQUEST_SENT, cause="t", actor="t", at=clock.at)
    record.hold.apply(HoldEvent.STOP_CONFIRMED, cause="t", actor="t", at=clock.at, amount=held)
    record.stop_expires_at = clock.at + timedelta(hours=48)
    return record


def desk() -> tuple[FreezeDesk, FakeDispatchStore, ScriptedAdapter, FixedClock]:
    store = FakeDispatchStore()
    adapter = ScriptedAdapter({})
    clock = FixedClock(requested_hold().requested_at)
    return (
        FreezeDesk(
            store,
            InstitutionGateway(adapter, REGISTRY, hedge=True),
            clock,
            DeadlineSettings().policy(),
            random.Random(3),
        ),
        store,
        adapter,
        clock,
    )


async def test_a_confirmed_freeze_makes_the_hold_frozen_for_six_months() -> None:
    freezes, store, adapter, clock = desk()
    record = stopped(clock)
    store.add(record)
    outcome = await freezes.order(
        record.hold.id, document_ref="CN-2026-FRZ-0042", actor="operator:li"
    )
    await freezes.wait_idle()
    assert outcome is FreezeOrderOutcome.ORDERED
    stored = store.holds[record.hold.id]
    assert (stored.hold.state, stored.hold.amount_frozen) == (HoldState.FROZEN, 8_000)
    assert stored.freeze_expires_at == clock.at + timedelta(days=182)
    [request] = adapter.freezes
    assert (request.amount, request.legal_document_ref, request.renewal) == (
        8_000,
        "CN-2026-FRZ-0042",
        False,
    )
    assert store.transitions[-1].event is HoldEvent.FREEZE_CONFIRMED


async def test_a_freeze_is_retried_with_the_same_key_and_renewed_later() -> None:
    freezes, store, adapter, clock = desk()
    adapter.freeze_script["BK01"] = [
        InstitutionTimeout("slow"),
        FreezeAnswerV1(status="frozen", amount_frozen=8_000),
    ]
    record = stopped(clock)
    store.add(record)
    await freezes.order(record.hold.id, document_ref="DOC-1", actor="operator:li")
    await freezes.wait_idle()
    assert store.holds[record.hold.id].hold.state is HoldState.STOPPED
    for _ in range(20):
        clock.at += timedelta(seconds=1)
        await freezes.sweep_once()
    assert store.holds[record.hold.id].hold.state is HoldState.FROZEN
    assert len({r.idempotency_key for r in adapter.freezes}) == 1 and len(adapter.freezes) == 2

    clock.at += timedelta(days=100)
    await freezes.order(record.hold.id, document_ref="DOC-2", actor="operator:li")
    await freezes.wait_idle()
    stored = store.holds[record.hold.id]
    assert stored.freeze_expires_at == clock.at + timedelta(days=182)
    assert adapter.freezes[-1].renewal and store.transitions[-1].event is HoldEvent.FREEZE_RENEWED


async def test_a_refused_freeze_is_recorded_and_only_stopped_holds_can_be_frozen() -> None:
    freezes, store, adapter, clock = desk()
    adapter.freeze_script["BK01"] = [FreezeAnswerV1(status="rejected", reason="document unsigned")]
    record = stopped(clock)
    store.add(record)
    await freezes.order(record.hold.id, document_ref="DOC-1", actor="operator:li")
    await freezes.wait_idle()
    stored = store.holds[record.hold.id]
    assert stored.hold.state is HoldState.STOPPED
    assert "document unsigned" in (stored.state_reason or "")
    assert stored.freeze_next_attempt_at is None
    waiting = requested_hold()
    store.add(waiting)
    assert await freezes.order(waiting.hold.id, document_ref="D", actor="operator:li") is (
        FreezeOrderOutcome.NOT_ALLOWED
    )


async def test_a_freeze_expiry_is_warned_about_and_recorded() -> None:
    freezes, store, _, clock = desk()
    record = stopped(clock)
    store.add(record)
    await freezes.order(record.hold.id, document_ref="DOC-1", actor="operator:li")
    await freezes.wait_idle()
    keeper = DeadlineKeeper(
        store,
        REGISTRY,
        clock,
        DeadlineSettings().policy(),
        events_topic="events",
        stop_requests_topic="stops",
    )
    frozen_at = clock.at
    for days in (100, 168, 179, 182):
        clock.at = frozen_at + timedelta(days=days)
        await keeper.sweep_once()
    assert [(e.payload["event"], e.payload.get("warning")) for e in store.events] == [
        ("freeze_expiring", "336h"),
        ("freeze_expiring", "72h"),
        ("freeze_lapsed", None),
    ]
    assert store.holds[record.hold.id].hold.state is HoldState.EXPIRED
    assert "formal freeze expired" in store.transitions[-1].cause
