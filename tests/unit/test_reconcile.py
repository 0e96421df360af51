"""Reconciliation with hand-written fakes: each institution asked once for its unknown
outcomes; the truth applied with the cause `reconciled`; bad statuses refused."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import timedelta

from stopper.app.dispatch import Dispatcher
from stopper.app.gateway import InstitutionGateway
from stopper.app.ports import HoldRecord
from stopper.app.reconcile import Reconciler
from stopper.config import DispatchSettings
from stopper.domain.holds import HoldState
from stopper.domain.messages import AnswerKind, InstitutionAnswer, StatusKind, StopStatus
from stopper.errors import InstitutionUnavailable
from stopper.metrics import RECONCILED
from stopper.registry import load_registry
from tests.unit.fakes import FakeDispatchStore, FixedClock, ScriptedAdapter, requested_hold

REGISTRY = load_registry()
STOPPED = InstitutionAnswer(AnswerKind.STOPPED, amount_held=40_000)
NOW = requested_hold().requested_at


def setup() -> tuple[Reconciler, FakeDispatchStore, ScriptedAdapter, FixedClock]:
    store = FakeDispatchStore()
    adapter = ScriptedAdapter({code: [InstitutionAnswer(AnswerKind.ACCEPTED)] for code in REGISTRY})
    clock = FixedClock(NOW + timedelta(minutes=10))
    rng = random.Random(1)
    dispatcher = Dispatcher(
        store,
        InstitutionGateway(adapter, REGISTRY, hedge=True, rng=rng),
        clock,
        DispatchSettings().policy(),
        rng,
    )
    return Reconciler(store, dispatcher, clock), store, adapter, clock


def in_state(state: HoldState, code: str = "BK01", attempts: int = 1) -> HoldRecord:
    record = requested_hold(code)
    record.hold.state = state
    return replace(record, attempts=attempts, accepted_at=NOW, sent_at=NOW)


def key(record: HoldRecord) -> str:
    return f"stopper-{record.hold.id}-0"


async def test_one_request_per_institution_applies_the_truth_and_records_the_divergence() -> None:
    reconciler, store, adapter, _ = setup()
    unconfirmed, failed, pending = (
        in_state(HoldState.UNCONFIRMED),
        in_state(HoldState.FAILED),
        in_state(HoldState.UNCONFIRMED),
    )
    never_sent = in_state(HoldState.FAILED, attempts=0)
    other_bank = in_state(HoldState.UNCONFIRMED, code="BK02")
    for record in (unconfirmed, failed, pending, never_sent, other_bank):
        store.add(record)
    adapter.status_script["BK01"] = [
        StopStatus(key(unconfirmed), StatusKind.ANSWERED, unconfirmed.hold.id, STOPPED),
        StopStatus(key(failed), StatusKind.ANSWERED, failed.hold.id, STOPPED),
        StopStatus(key(pending), StatusKind.PENDING),
    ]
    applied_before = RECONCILED.labels("applied")._value.get()
    report = await reconciler.reconcile("BK01")
    assert adapter.status_queries == [[key(unconfirmed), key(failed), key(pending)]]
    assert dict(report.outcomes["BK01"]) == {"applied": 2, "pending": 1}
    assert RECONCILED.labels("applied")._value.get() == applied_before + 2
    for record in (unconfirmed, failed):
        stored = store.holds[record.hold.id]
        assert stored.hold.state is HoldState.STOPPED
        assert stored.hold.amount_stopped == 40_000
    assert store.holds[pending.hold.id].hold.state is HoldState.UNCONFIRMED
    assert all(t.cause.startswith("reconciled") for t in store.transitions)
    assert {(d.stopper_state, d.institution_status) for d in store.divergences} == {
        ("unconfirmed", "stopped"),
        ("failed", "stopped"),
    }


async def test_statuses_about_other_requests_or_contradicting_a_final_state_change_nothing() -> (
    None
):
    reconciler, store, adapter, _ = setup()
    asked = in_state(HoldState.UNCONFIRMED)
    stranger = requested_hold()
    store.add(asked)
    adapter.status_script["BK01"] = [
        StopStatus(key(stranger), StatusKind.ANSWERED, stranger.hold.id, STOPPED)
    ]
    report = await reconciler.reconcile("BK01")
    assert dict(report.outcomes["BK01"]) == {"other_request": 1, "unanswered": 1}
    assert store.holds[asked.hold.id].hold.state is HoldState.UNCONFIRMED
    assert store.divergences == []


async def test_unknown_resends_an_unconfirmed_request_and_leaves_a_failed_one_to_a_person() -> None:
    reconciler, store, adapter, _ = setup()
    unconfirmed, failed = in_state(HoldState.UNCONFIRMED), in_state(HoldState.FAILED)
    store.add(unconfirmed)
    store.add(failed)
    adapter.status_script["BK01"] = [
        StopStatus(key(unconfirmed), StatusKind.UNKNOWN),
        StopStatus(key(failed), StatusKind.UNKNOWN),
    ]
    report = await reconciler.reconcile("BK01")
    assert dict(report.outcomes["BK01"]) == {"resent": 1, "unknown": 1}
    assert [r.idempotency_key for r in adapter.requests] == [key(unconfirmed)]
    assert store.holds[failed.hold.id].hold.state is HoldState.FAILED


async def test_an_unreachable_institution_is_skipped_until_the_next_pass() -> None:
    reconciler, store, adapter, _ = setup()
    record = in_state(HoldState.UNCONFIRMED)
    store.add(record)
    adapter.status_script["BK01"] = [InstitutionUnavailable("503")]
    report = await reconciler.reconcile()
    assert "BK01" in report.unreachable
    assert store.holds[record.hold.id].hold.state is HoldState.UNCONFIRMED
