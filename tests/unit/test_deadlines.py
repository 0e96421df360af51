"""The 48-hour lapse: warnings ahead, the lapse recorded, re-application limited."""

from __future__ import annotations

from datetime import timedelta

from stopper.app.deadlines import DeadlineKeeper, ReapplyOutcome
from stopper.app.ports import HoldRecord
from stopper.config import DeadlineSettings
from stopper.domain.deadlines import deadline_due
from stopper.domain.holds import HoldEvent, HoldState
from stopper.registry import load_registry
from tests.unit.fakes import FakeDispatchStore, FixedClock, requested_hold

LEADS = [timedelta(hours=12), timedelta(hours=2)]


def stopped_hold(clock: FixedClock) -> HoldRecord:
    record = requested_hold(at=clock.at)
    record.hold.apply(HoldEvent.REQUEST_SENT, cause="t", actor="t", at=clock.at)
    record.hold.apply(HoldEvent.STOP_CONFIRMED, cause="t", actor="t", at=clock.at, amount=5_000)
    record.stop_expires_at = clock.at + timedelta(hours=48)
    return record


def keeper(store: FakeDispatchStore, clock: FixedClock) -> DeadlineKeeper:
    return DeadlineKeeper(
        store,
        load_registry(),
        clock,
        DeadlineSettings().policy(),
        events_topic="events",
        stop_requests_topic="stops",
    )


def test_deadline_due_in_order() -> None:
    start = requested_hold().requested_at
    expires = start + timedelta(hours=48)
    due = deadline_due(
        expires_at=expires, warnings_sent=0, leads=LEADS, now=start + timedelta(hours=35)
    )
    assert (due.warnings, due.lapse) == ((), False)
    due = deadline_due(
        expires_at=expires, warnings_sent=0, leads=LEADS, now=start + timedelta(hours=47)
    )
    assert due.warnings == (timedelta(hours=12), timedelta(hours=2)) and not due.lapse
    due = deadline_due(expires_at=expires, warnings_sent=2, leads=LEADS, now=expires)
    assert (due.warnings, due.lapse, due.silent) == ((), True, False)
    due = deadline_due(expires_at=expires, warnings_sent=1, leads=LEADS, now=expires)
    assert (due.warnings, due.lapse, due.silent) == ((timedelta(hours=2),), True, True)


async def test_warnings_go_out_ahead_and_the_lapse_is_recorded() -> None:
    store = FakeDispatchStore()
    clock = FixedClock(requested_hold().requested_at)
    record = stopped_hold(clock)
    store.add(record)
    deadlines = keeper(store, clock)
    seen = []
    for hours in (30, 36, 37, 46, 47, 48):
        clock.at = record.requested_at + timedelta(hours=hours)
        await deadlines.sweep_once()
        seen.append([(e.payload["event"], e.payload.get("warning")) for e in store.events])
    assert seen[0] == []
    assert seen[1] == [("stop_expiring", "12h")]
    assert seen[2] == seen[1]  # each warning once
    assert seen[3] == [("stop_expiring", "12h"), ("stop_expiring", "2h")]
    assert seen[5] == [*seen[3], ("stop_lapsed", None)]
    stored = store.holds[record.hold.id]
    assert stored.hold.state is HoldState.EXPIRED
    lapse = store.transitions[-1]
    assert (lapse.to_state, lapse.actor) == (HoldState.EXPIRED, "stopper:deadlines")
    assert "without a formal freeze" in lapse.cause and "had not gone out" not in lapse.cause
    assert all("6222" not in str(e.payload) for e in store.events)


async def test_a_lapse_found_late_still_sends_its_warnings_and_says_it_was_silent() -> None:
    store = FakeDispatchStore()
    clock = FixedClock(requested_hold().requested_at)
    record = stopped_hold(clock)
    store.add(record)
    clock.at += timedelta(hours=50)
    await keeper(store, clock).sweep_once()
    assert [e.payload["event"] for e in store.events] == [
        "stop_expiring",
        "stop_expiring",
        "stop_lapsed",
    ]
    assert "had not gone out ahead" in store.transitions[-1].cause


async def test_reapplication_is_allowed_twice_with_a_new_key_each_time() -> None:
    store = FakeDispatchStore()
    clock = FixedClock(requested_hold().requested_at)
    record = stopped_hold(clock)
    store.add(record)
    deadlines = keeper(store, clock)
    outcomes = []
    for _ in range(3):
        outcomes.append(await deadlines.reapply(record.hold.id, actor="operator:7", reason="renew"))
        stored = store.holds[record.hold.id]
        if stored.hold.state is HoldState.REQUESTED:  # confirm the new stop, as the bank would
            stored.hold.apply(HoldEvent.REQUEST_SENT, cause="t", actor="t", at=clock.at)
            stored.hold.apply(
                HoldEvent.STOP_CONFIRMED, cause="t", actor="t", at=clock.at, amount=5_000
            )
    assert outcomes == [
        ReapplyOutcome.REAPPLIED,
        ReapplyOutcome.REAPPLIED,
        ReapplyOutcome.NOT_ALLOWED,
    ]
    keys = [e.payload["idempotency_key"] for e in store.events if e.topic == "stops"]
    assert keys == [f"stopper-{record.hold.id}-1", f"stopper-{record.hold.id}-2"]
    assert store.holds[record.hold.id].hold.reapplications == 2
    unknown = await deadlines.reapply(requested_hold().hold.id, actor="operator:7", reason="x")
    assert unknown is ReapplyOutcome.UNKNOWN_HOLD


async def test_only_a_stop_in_force_or_lapsed_is_reapplied() -> None:
    store = FakeDispatchStore()
    clock = FixedClock(requested_hold().requested_at)
    failed = requested_hold(at=clock.at)
    failed.hold.apply(HoldEvent.GAVE_UP, cause="t", actor="t", at=clock.at)
    waiting = requested_hold(at=clock.at)
    store.add(failed)
    store.add(waiting)
    deadlines = keeper(store, clock)
    for record in (failed, waiting):
        outcome = await deadlines.reapply(record.hold.id, actor="operator:7", reason="renew")
        assert outcome is ReapplyOutcome.NOT_ALLOWED
        assert store.holds[record.hold.id].hold.reapplications == 0
    assert store.events == []
