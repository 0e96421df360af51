"""The dispatcher with hand-written fakes: retries, business answers, deadlines, breakers,
callbacks awaited, and idempotency keys."""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace
from datetime import timedelta
from uuid import uuid4

import pytest

from stopper.app.dispatch import Dispatcher
from stopper.app.gateway import InstitutionGateway
from stopper.app.ports import HoldRecord
from stopper.app.stop_decisions import AnswerOutcome
from stopper.config import DispatchSettings
from stopper.domain.holds import Hold, HoldEvent, HoldState
from stopper.domain.messages import (
    AnswerKind,
    InstitutionAnswer,
    OnwardKind,
    OnwardTransfer,
    RequestStop,
    StatusKind,
    StopStatus,
)
from stopper.errors import (
    InstitutionError,
    InstitutionTimeout,
    InstitutionUnavailable,
    MalformedAnswer,
    RequestRefused,
)
from stopper.metrics import STATUS_REFUSED as REFUSED
from stopper.registry import BreakerPolicy, Institution, Registry, RetryPolicy, load_registry
from tests.unit.fakes import (
    FakeDispatchStore,
    FixedClock,
    Scripted,
    ScriptedAdapter,
    new_record,
    requested_hold,
)

STOPPED = InstitutionAnswer(AnswerKind.STOPPED, amount_held=60_000)
NOW = requested_hold().requested_at
ACCEPTED = InstitutionAnswer(AnswerKind.ACCEPTED)
NOT_FOUND = InstitutionAnswer(AnswerKind.NOT_FOUND)


def registry(**changes: object) -> Registry:
    base = load_registry()
    bk01 = replace(base["BK01"], **changes)  # type: ignore[arg-type]
    return Registry({**base.institutions, "BK01": bk01})


def setup(
    script: list[Scripted], reg: Registry | None = None
) -> tuple[Dispatcher, FakeDispatchStore, ScriptedAdapter, FixedClock]:
    store = FakeDispatchStore()
    adapter = ScriptedAdapter({"BK01": script})
    clock = FixedClock(requested_hold().requested_at)
    rng = random.Random(1)
    dispatcher = Dispatcher(
        store,
        InstitutionGateway(adapter, reg or registry(), hedge=True, rng=rng),
        clock,
        DispatchSettings().policy(),
        rng,
    )
    return dispatcher, store, adapter, clock


async def run_until_settled(dispatcher: Dispatcher, clock: FixedClock, seconds: int) -> None:
    """Let the sweeper run once per simulated second."""
    for _ in range(seconds):
        clock.at += timedelta(seconds=1)
        await dispatcher.sweep_once()
        await dispatcher.wait_idle()


async def test_a_stop_confirmed_at_once_records_the_amount_held() -> None:
    dispatcher, store, adapter, clock = setup([STOPPED])
    record = requested_hold()
    store.add(record)
    await dispatcher.attempt(record.hold.id, first=True)
    stored = store.holds[record.hold.id]
    assert stored.hold.state is HoldState.STOPPED
    assert stored.hold.amount_stopped == 60_000
    assert stored.stop_expires_at == clock.at + timedelta(hours=48)
    assert [r.idempotency_key for r in adapter.requests] == [f"stopper-{record.hold.id}-0"]
    assert [(t.from_state, t.to_state) for t in store.transitions] == [
        (HoldState.REQUESTED, HoldState.SENT),
        (HoldState.SENT, HoldState.STOPPED),
    ]


async def test_retryable_failures_are_retried_with_the_same_key() -> None:
    dispatcher, store, adapter, clock = setup(
        [
            InstitutionTimeout("slow"),
            InstitutionUnavailable("503"),
            MalformedAnswer("junk"),
            STOPPED,
        ]
    )
    record = requested_hold()
    store.add(record)
    await dispatcher.attempt(record.hold.id, first=True)
    assert store.holds[record.hold.id].hold.state is HoldState.SENT
    assert "attempt 1: slow" in (store.holds[record.hold.id].state_reason or "")
    await run_until_settled(dispatcher, clock, 30)
    assert store.holds[record.hold.id].hold.state is HoldState.STOPPED
    assert len(adapter.requests) == 4
    assert {r.idempotency_key for r in adapter.requests} == {f"stopper-{record.hold.id}-0"}


async def test_backoff_grows_exponentially_with_jitter_inside_its_bounds() -> None:
    dispatcher, store, _, clock = setup([InstitutionUnavailable("503")])
    record = requested_hold()
    store.add(record)
    delays = []
    for attempt in range(1, 7):
        before = clock.at
        if attempt == 1:
            await dispatcher.attempt(record.hold.id, first=True)
        else:
            clock.at = store.holds[record.hold.id].next_attempt_at or clock.at
            before = clock.at
            await dispatcher.sweep_once()
            await dispatcher.wait_idle()
        stored = store.holds[record.hold.id]
        assert stored.next_attempt_at is not None
        delays.append((stored.next_attempt_at - before).total_seconds())
    policy = load_registry()["BK01"].retry
    for attempt, delay in enumerate(delays, start=1):
        ceiling = min(policy.max_backoff_ms, policy.initial_backoff_ms * 2 ** (attempt - 1))
        breaker_wait = load_registry()["BK01"].breaker.cooldown_s
        assert policy.initial_backoff_ms / 2000 <= delay <= max(ceiling / 1000, breaker_wait)


@pytest.mark.parametrize("kind", [AnswerKind.NOT_FOUND, AnswerKind.REJECTED])
async def test_business_answers_are_final_and_never_retried(kind: AnswerKind) -> None:
    dispatcher, store, adapter, clock = setup([InstitutionAnswer(kind, reason="closed")])
    record = requested_hold()
    store.add(record)
    await dispatcher.attempt(record.hold.id, first=True)
    await run_until_settled(dispatcher, clock, 200)
    assert store.holds[record.hold.id].hold.state.value == kind.value
    assert len(adapter.requests) == 1


# Retries a plenty, bounded by a 20 s deadline from the first attempt.
PATIENT_20S = RetryPolicy(
    max_attempts=100, initial_backoff_ms=500, max_backoff_ms=2000, deadline_s=20
)


async def test_the_hold_fails_with_the_reason_when_the_deadline_passes() -> None:
    """An institution that answers, but with errors (a 5xx each time, then its breaker open),
    never took the request: the hold fails at the deadline, without a status inquiry."""
    reg = registry(retry=PATIENT_20S)
    dispatcher, store, adapter, clock = setup([InstitutionUnavailable("HTTP 503")], reg)
    record = requested_hold()
    store.add(record)
    await dispatcher.attempt(record.hold.id, first=True)
    await run_until_settled(dispatcher, clock, 40)
    stored = store.holds[record.hold.id]
    assert stored.hold.state is HoldState.FAILED
    # The last attempt may have met the breaker rather than the institution; either way the
    # reason says what happened.
    assert (stored.state_reason or "").startswith("attempt ")
    assert "a person must act" in store.transitions[-1].cause
    assert store.transitions[-1].at - record.requested_at <= timedelta(seconds=21)
    assert 3 <= len(adapter.requests)
    assert adapter.statuses == []


# Three attempts within 20 s, and a breaker that stays closed: each attempt meets the
# institution, so the last error is the institution's own.
THREE_TRIES = registry(
    retry=RetryPolicy(max_attempts=3, initial_backoff_ms=500, max_backoff_ms=2000, deadline_s=20),
    breaker=BreakerPolicy(failure_threshold=100, cooldown_s=30),
    callback_wait_s=10.0,
)


async def unanswered(
    status: list[StopStatus | InstitutionError],
) -> tuple[Dispatcher, FakeDispatchStore, ScriptedAdapter, FixedClock, HoldRecord]:
    """A hold whose three attempts at BK01 all timed out, `status` scripting the inquiries."""
    dispatcher, store, adapter, clock = setup(
        [InstitutionTimeout("no answer in 2000 ms")], THREE_TRIES
    )
    adapter.status_script["BK01"] = status
    record = requested_hold()
    store.add(record)
    await dispatcher.attempt(record.hold.id, first=True)
    for _ in range(30):
        await run_until_settled(dispatcher, clock, 1)
        if store.holds[record.hold.id].hold.state is not HoldState.SENT:
            break
    return dispatcher, store, adapter, clock, store.holds[record.hold.id]


async def test_a_hold_whose_attempts_all_timed_out_is_asked_about_before_it_may_fail() -> None:
    """No answer is not a refusal: the institution may have carried the request out."""
    dispatcher, store, adapter, clock, stored = await unanswered([])
    assert stored.hold.state is HoldState.UNCONFIRMED
    assert stored.accepted_at is None  # not accepted: unanswered
    assert len(adapter.requests) == 3
    assert "attempt 3: no answer in 2000 ms" in (stored.state_reason or "")
    assert "unanswered: the institution is asked" in (stored.state_reason or "")
    assert store.transitions[-1].event is HoldEvent.UNANSWERED
    assert store.transitions[-1].actor == "stopper:dispatcher"
    assert adapter.statuses == []  # not before the last attempt's answer would surely have come
    assert stored.next_attempt_at == clock.at + timedelta(seconds=2)
    await run_until_settled(dispatcher, clock, 3)
    assert adapter.statuses == [f"stopper-{stored.hold.id}-0"]
    assert len(adapter.requests) == 3  # asked about, not sent again


async def test_an_unanswered_request_the_institution_carried_out_is_stopped_by_the_inquiry() -> (
    None
):
    key_of = "stopper-{}-0".format
    dispatcher, store, adapter, clock, stored = await unanswered([])
    hold_id = stored.hold.id
    adapter.status_script["BK01"] = [
        StopStatus(key_of(hold_id), StatusKind.ANSWERED, hold_id, STOPPED)
    ]
    await run_until_settled(dispatcher, clock, 3)
    settled = store.holds[hold_id]
    assert settled.hold.state is HoldState.STOPPED
    assert settled.hold.amount_stopped == 60_000
    assert store.transitions[-1].cause.startswith("status inquiry: stopped")
    assert [(t.from_state, t.to_state) for t in store.transitions] == [
        (HoldState.REQUESTED, HoldState.SENT),
        (HoldState.SENT, HoldState.UNCONFIRMED),
        (HoldState.UNCONFIRMED, HoldState.STOPPED),
    ]
    await run_until_settled(dispatcher, clock, 600)
    assert (len(adapter.requests), len(adapter.statuses)) == (3, 1)


async def test_an_unanswered_request_the_institution_never_received_fails() -> None:
    dispatcher, store, adapter, clock, stored = await unanswered([])
    hold_id = stored.hold.id
    adapter.status_script["BK01"] = [StopStatus(f"stopper-{hold_id}-0", StatusKind.UNKNOWN)]
    await run_until_settled(dispatcher, clock, 3)
    failed = store.holds[hold_id]
    assert failed.hold.state is HoldState.FAILED
    assert "none of 3 unanswered attempts reached it; a person must act" in (
        failed.state_reason or ""
    )
    assert len(adapter.requests) == 3  # its budget is spent: not sent again


async def test_an_unanswered_request_the_institution_has_pending_is_accepted() -> None:
    dispatcher, store, adapter, clock, stored = await unanswered([])
    hold_id = stored.hold.id
    adapter.status_script["BK01"] = [StopStatus(f"stopper-{hold_id}-0", StatusKind.PENDING)]
    await run_until_settled(dispatcher, clock, 3)
    pending = store.holds[hold_id]
    assert pending.hold.state is HoldState.UNCONFIRMED
    assert pending.accepted_at is not None  # at the inquiry
    assert stored.next_attempt_at is not None
    assert stored.next_attempt_at <= pending.accepted_at <= clock.at
    assert "the institution has the request (pending" in (pending.state_reason or "")
    # Its answer is owed as for a request accepted at once: asked about until the stop lapses.
    assert pending.dispatch_deadline_at == pending.accepted_at + timedelta(hours=48)
    await run_until_settled(dispatcher, clock, 3600)
    assert store.holds[hold_id].hold.state is HoldState.UNCONFIRMED
    assert len(adapter.requests) == 3


async def test_an_unanswered_hold_fails_when_its_inquiries_go_unanswered_too() -> None:
    dispatcher, store, adapter, clock, stored = await unanswered([InstitutionTimeout("silent")])
    gave_up_at = stored.dispatch_deadline_at
    assert gave_up_at == clock.at + timedelta(seconds=20)  # another deadline's worth of asking
    await run_until_settled(dispatcher, clock, 19)
    assert store.holds[stored.hold.id].hold.state is HoldState.UNCONFIRMED
    await run_until_settled(dispatcher, clock, 30)
    failed = store.holds[stored.hold.id]
    assert failed.hold.state is HoldState.FAILED
    assert (failed.state_reason or "").startswith("no answer to 3 attempts, nor to ")
    assert store.transitions[-1].at <= gave_up_at + timedelta(seconds=1)
    assert len(adapter.requests) == 3
    assert 1 <= len(adapter.statuses) <= 3  # from 2 s on, then 20 s apart or more


async def test_a_hold_that_waited_in_a_backlog_is_still_asked_and_gets_its_whole_deadline() -> None:
    """The deadline is the institution's to use up: a report that waited past `deadline_s` in
    the consumer lag (or in an outage of Stopper's own) still becomes a stop request."""
    reg = registry(retry=PATIENT_20S)
    dispatcher, store, adapter, clock = setup(
        [InstitutionTimeout("no answer in 2000 ms"), InstitutionTimeout("again"), STOPPED], reg
    )
    record = requested_hold()
    store.add(record)
    clock.at = record.requested_at + timedelta(minutes=10)  # ten minutes behind
    await dispatcher.attempt(record.hold.id, first=True)
    assert len(adapter.requests) == 1
    assert store.holds[record.hold.id].dispatch_deadline_at == clock.at + timedelta(seconds=20)
    await run_until_settled(dispatcher, clock, 20)
    assert store.holds[record.hold.id].hold.state is HoldState.STOPPED
    assert len(adapter.requests) == 3


async def test_a_retry_that_fell_due_in_time_is_made_when_stopper_reaches_it_late() -> None:
    """A starved process (or a sweeper behind) reaching a retry after the deadline is Stopper's
    lateness, not the institution's: the retry due before the deadline is still made."""
    reg = registry(retry=PATIENT_20S)
    dispatcher, store, adapter, clock = setup([InstitutionTimeout("no answer in 2000 ms")], reg)
    record = requested_hold()
    store.add(record)
    await dispatcher.attempt(record.hold.id, first=True)
    retrying = store.holds[record.hold.id]
    assert retrying.hold.state is HoldState.SENT and retrying.next_attempt_at is not None
    assert retrying.dispatch_deadline_at is not None
    assert retrying.next_attempt_at < retrying.dispatch_deadline_at
    # The process comes back to it a minute late, well past the 20 s deadline.
    adapter.script["BK01"] = [STOPPED]
    clock.at = retrying.dispatch_deadline_at + timedelta(minutes=1)
    await dispatcher.sweep_once()
    await dispatcher.wait_idle()
    assert store.holds[record.hold.id].hold.state is HoldState.STOPPED
    assert len(adapter.requests) == 2


async def test_a_refused_request_fails_at_once() -> None:
    dispatcher, store, adapter, clock = setup([RequestRefused("HTTP 400")])
    record = requested_hold()
    store.add(record)
    await dispatcher.attempt(record.hold.id, first=True)
    await run_until_settled(dispatcher, clock, 10)
    assert store.holds[record.hold.id].hold.state is HoldState.FAILED
    assert len(adapter.requests) == 1


async def test_accepted_is_unconfirmed_asked_about_at_a_slowing_cadence_never_sent_again() -> None:
    reg = registry(callback_wait_s=30.0)
    dispatcher, store, adapter, clock = setup([ACCEPTED], reg)
    record = requested_hold()
    store.add(record)
    await dispatcher.attempt(record.hold.id, first=True)
    stored = store.holds[record.hold.id]
    assert stored.hold.state is HoldState.UNCONFIRMED
    assert stored.accepted_at == NOW
    assert "accepted by the institution" in (stored.state_reason or "")
    await run_until_settled(dispatcher, clock, 29)
    assert adapter.statuses == []
    await run_until_settled(dispatcher, clock, 2)
    assert len(adapter.statuses) == 1  # the callback is overdue: one inquiry, no new request
    # Pending each time: the waits double (60 s, 120 s, 240 s, with jitter of +-20 %).
    await run_until_settled(dispatcher, clock, 47)
    assert len(adapter.statuses) == 1
    await run_until_settled(dispatcher, clock, 26)
    assert len(adapter.statuses) == 2
    await run_until_settled(dispatcher, clock, 600)
    assert 3 <= len(adapter.statuses) <= 4
    assert len(adapter.requests) == 1
    assert {key for key in adapter.statuses} == {f"stopper-{record.hold.id}-0"}
    outcome = await dispatcher.record_answer(
        record.hold.id, STOPPED, actor="institution:BK01", via="institution callback"
    )
    assert outcome is AnswerOutcome.APPLIED
    assert store.holds[record.hold.id].hold.state is HoldState.STOPPED
    asked = len(adapter.statuses)
    await run_until_settled(dispatcher, clock, 3600)
    assert (len(adapter.requests), len(adapter.statuses)) == (1, asked)
    assert [(t.from_state, t.to_state) for t in store.transitions] == [
        (HoldState.REQUESTED, HoldState.SENT),
        (HoldState.SENT, HoldState.UNCONFIRMED),
        (HoldState.UNCONFIRMED, HoldState.STOPPED),
    ]


async def test_a_status_inquiry_that_finds_the_outcome_applies_it() -> None:
    reg = registry(callback_wait_s=5.0)
    dispatcher, store, adapter, clock = setup([ACCEPTED], reg)
    record = requested_hold()
    store.add(record)
    key = f"stopper-{record.hold.id}-0"
    adapter.status_script["BK01"] = [StopStatus(key, StatusKind.ANSWERED, record.hold.id, STOPPED)]
    await dispatcher.attempt(record.hold.id, first=True)
    await run_until_settled(dispatcher, clock, 6)
    stored = store.holds[record.hold.id]
    assert stored.hold.state is HoldState.STOPPED
    assert stored.hold.amount_stopped == 60_000
    assert "status inquiry" in store.transitions[-1].cause
    assert len(adapter.requests) == 1


async def test_a_request_the_institution_never_received_is_sent_again_with_the_same_key() -> None:
    reg = registry(callback_wait_s=5.0)
    dispatcher, store, adapter, clock = setup([ACCEPTED, STOPPED], reg)
    record = requested_hold()
    store.add(record)
    key = f"stopper-{record.hold.id}-0"
    adapter.status_script["BK01"] = [StopStatus(key, StatusKind.UNKNOWN)]
    await dispatcher.attempt(record.hold.id, first=True)
    await run_until_settled(dispatcher, clock, 6)
    assert store.holds[record.hold.id].hold.state is HoldState.STOPPED
    assert [r.idempotency_key for r in adapter.requests] == [key, key]
    assert [(t.from_state, t.to_state) for t in store.transitions][1:] == [
        (HoldState.SENT, HoldState.UNCONFIRMED),
        (HoldState.UNCONFIRMED, HoldState.SENT),
        (HoldState.SENT, HoldState.STOPPED),
    ]


@pytest.mark.parametrize("about", ["other_request", "other_hold"])
async def test_a_status_about_another_request_or_hold_is_refused_and_changes_nothing(
    about: str,
) -> None:
    reg = registry(callback_wait_s=5.0)
    dispatcher, store, adapter, clock = setup([ACCEPTED], reg)
    record = requested_hold()
    store.add(record)
    key = f"stopper-{record.hold.id}-0"
    other = requested_hold().hold.id
    status = (
        StopStatus(f"stopper-{other}-0", StatusKind.ANSWERED, other, STOPPED)
        if about == "other_request"
        else StopStatus(key, StatusKind.ANSWERED, other, STOPPED)
    )
    adapter.status_script["BK01"] = [status]
    before = REFUSED.labels("BK01", about)._value.get()
    await dispatcher.attempt(record.hold.id, first=True)
    await run_until_settled(dispatcher, clock, 6)
    assert store.holds[record.hold.id].hold.state is HoldState.UNCONFIRMED
    assert REFUSED.labels("BK01", about)._value.get() == before + 1
    assert len(adapter.requests) == 1


async def test_an_unreachable_institution_does_not_fail_an_unconfirmed_hold() -> None:
    reg = registry(callback_wait_s=5.0)
    dispatcher, store, adapter, clock = setup([ACCEPTED], reg)
    record = requested_hold()
    store.add(record)
    adapter.status_script["BK01"] = [InstitutionTimeout("no answer")]
    await dispatcher.attempt(record.hold.id, first=True)
    await run_until_settled(dispatcher, clock, 600)
    stored = store.holds[record.hold.id]
    assert stored.hold.state is HoldState.UNCONFIRMED
    assert "unconfirmed after" in (stored.state_reason or "")
    assert len(adapter.requests) == 1


async def test_an_unconfirmed_hold_fails_only_when_its_stop_would_have_lapsed() -> None:
    reg = registry(callback_wait_s=5.0)
    settings = DispatchSettings(stop_lapse_hours=0.5, inquiry_max_interval_s=300)
    store = FakeDispatchStore()
    adapter = ScriptedAdapter({"BK01": [ACCEPTED]})
    clock = FixedClock(NOW)
    rng = random.Random(1)
    dispatcher = Dispatcher(
        store, InstitutionGateway(adapter, reg, hedge=True, rng=rng), clock, settings.policy(), rng
    )
    record = requested_hold()
    store.add(record)
    await dispatcher.attempt(record.hold.id, first=True)
    await run_until_settled(dispatcher, clock, 29 * 60)
    assert store.holds[record.hold.id].hold.state is HoldState.UNCONFIRMED
    await run_until_settled(dispatcher, clock, 6 * 60)
    stored = store.holds[record.hold.id]
    assert stored.hold.state is HoldState.FAILED
    assert "never confirmed" in (stored.state_reason or "")
    assert len(adapter.requests) == 1


def gated(settings: DispatchSettings) -> tuple[Dispatcher, FakeDispatchStore, GatedAdapter]:
    """A dispatcher whose BK01 and BK02 answer only once the adapter's `open` is set."""
    store = FakeDispatchStore()
    adapter = GatedAdapter({"BK01": [STOPPED], "BK02": [STOPPED]})
    rng = random.Random(1)
    dispatcher = Dispatcher(
        store,
        InstitutionGateway(adapter, registry(), hedge=True, rng=rng),
        FixedClock(NOW),
        settings.policy(),
        rng,
    )
    return dispatcher, store, adapter


async def test_one_institution_at_its_queue_limit_does_not_hold_up_another() -> None:
    dispatcher, store, adapter = gated(DispatchSettings(max_queued_per_institution=2))
    for _ in range(2):
        record = requested_hold("BK01")
        store.add(record)
        claim = await dispatcher.claim(record.hold.id, first=True)
        assert claim is not None
        dispatcher.start(claim)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await dispatcher.wait_for_room(["BK02"])
    assert loop.time() - started < 0.1  # BK02 has room: no wait
    await dispatcher.wait_for_room(["BK01", "BK02"])
    assert loop.time() - started >= 0.9  # BK01 is full: waited, at most a second
    adapter.open.set()
    await dispatcher.wait_idle()


async def test_a_process_behind_as_a_whole_holds_intake_until_it_has_room() -> None:
    """Past `max_queued` attempts in the process (every institution busy, or the process short
    of CPU), intake waits, however long, rather than starting more that would wait in memory
    against their deadlines; it goes on once attempts finish."""
    dispatcher, store, adapter = gated(
        DispatchSettings(max_queued_per_institution=10, max_queued=2)
    )
    for code in ("BK01", "BK02"):
        record = requested_hold(code)
        store.add(record)
        claim = await dispatcher.claim(record.hold.id, first=True)
        assert claim is not None
        dispatcher.start(claim)
    waiting = asyncio.create_task(dispatcher.wait_for_room(["BK02"]))
    await asyncio.sleep(1.5)
    assert not waiting.done(), "no second's cap: the process has no room"
    adapter.open.set()
    await asyncio.wait_for(waiting, timeout=2)
    await dispatcher.wait_idle()
    assert {h.hold.state for h in store.holds.values()} == {HoldState.STOPPED}


async def test_the_breaker_stops_calls_to_an_institution_that_is_down() -> None:
    reg = registry(breaker=BreakerPolicy(failure_threshold=3, cooldown_s=30))
    dispatcher, store, adapter, _ = setup([InstitutionUnavailable("503")], reg)
    records = [requested_hold() for _ in range(10)]
    for record in records:
        store.add(record)
        await dispatcher.attempt(record.hold.id, first=True)
    assert len(adapter.requests) == 3
    assert dispatcher.gateway.breaker("BK01").trips == 1
    assert all(store.holds[r.hold.id].hold.state is HoldState.SENT for r in records)


async def test_racing_attempts_for_one_hold_call_the_institution_once() -> None:
    dispatcher, store, adapter, clock = setup([STOPPED])
    record = requested_hold()
    store.add(record)
    clock.at += timedelta(seconds=15)  # past the first-dispatch grace: due for the sweeper too
    await asyncio.gather(
        dispatcher.attempt(record.hold.id, first=True),
        dispatcher.attempt(record.hold.id, first=True),
        dispatcher.sweep_once(),
    )
    await dispatcher.wait_idle()
    assert len(adapter.requests) == 1


async def test_a_late_answer_still_counts_for_a_failed_hold() -> None:
    dispatcher, store, _, _ = setup([RequestRefused("HTTP 400")])
    record = requested_hold()
    store.add(record)
    await dispatcher.attempt(record.hold.id, first=True)
    assert store.holds[record.hold.id].hold.state is HoldState.FAILED
    outcome = await dispatcher.record_answer(record.hold.id, STOPPED, actor="institution:BK01")
    assert outcome is AnswerOutcome.APPLIED
    assert store.holds[record.hold.id].hold.state is HoldState.STOPPED


async def test_an_answer_the_state_does_not_allow_is_a_conflict() -> None:
    dispatcher, store, _, _ = setup([NOT_FOUND])
    record = requested_hold()
    store.add(record)
    await dispatcher.attempt(record.hold.id, first=True)
    outcome = await dispatcher.record_answer(record.hold.id, STOPPED, actor="institution:BK01")
    assert outcome is AnswerOutcome.CONFLICT
    assert store.holds[record.hold.id].hold.state is HoldState.NOT_FOUND


async def test_more_held_than_asked_is_capped() -> None:
    dispatcher, store, _, _ = setup([InstitutionAnswer(AnswerKind.STOPPED, amount_held=10**9)])
    record = requested_hold(amount=5_000)
    store.add(record)
    await dispatcher.attempt(record.hold.id, first=True)
    assert store.holds[record.hold.id].hold.amount_stopped == 5_000


async def test_money_that_moved_on_is_followed_one_layer_deeper_at_once() -> None:
    onward = (
        OnwardTransfer(OnwardKind.TRANSFER, 30_000, NOW, "PI02", "880011112222"),
        OnwardTransfer(OnwardKind.CASH_WITHDRAWAL, 5_000, NOW),
    )
    wakes: list[bool] = []
    store = FakeDispatchStore()
    adapter = ScriptedAdapter(
        {
            "BK01": [InstitutionAnswer(AnswerKind.STOPPED, amount_held=60_000, onward=onward)],
            "PI02": [InstitutionAnswer(AnswerKind.STOPPED, amount_held=30_000)],
        }
    )
    clock = FixedClock(NOW)
    rng = random.Random(1)
    dispatcher = Dispatcher(
        store,
        InstitutionGateway(adapter, registry(), hedge=True, rng=rng),
        clock,
        DispatchSettings().policy(),
        rng,
        on_outbox=lambda: wakes.append(True),
    )
    record = requested_hold(amount=100_000, at=NOW)
    store.add(record)
    await dispatcher.attempt(record.hold.id, first=True)
    [child] = [r for r in store.holds.values() if r.hold.layer == 2]
    assert (child.hold.institution_code, child.hold.amount_asked) == ("PI02", 30_000)
    assert child.hold.parent_id == record.hold.id and wakes == [True]
    assert [e.outcome.value for e in store.edges] == ["followed", "unrecoverable"]
    await dispatcher.attempt(child.hold.id, first=True)
    assert store.holds[child.hold.id].hold.amount_stopped == 30_000


class GatedAdapter(ScriptedAdapter):
    """Answers only once `open` is set: an institution whose few connections are all busy."""

    def __init__(self, script: dict[str, list[Scripted]]) -> None:
        super().__init__(script)
        self.open = asyncio.Event()

    async def request_stop(
        self, institution: Institution, request: RequestStop
    ) -> InstitutionAnswer:
        await self.open.wait()
        return await super().request_stop(institution, request)


async def test_an_attempt_queued_past_its_lease_is_renewed_not_repeated() -> None:
    """Under a burst, attempts wait for an institution's connections longer than their lease;
    the sweeper renews this process's leases instead of attempting the holds again."""
    store = FakeDispatchStore()
    adapter = GatedAdapter({"BK01": [STOPPED]})
    clock = FixedClock(requested_hold().requested_at)
    reg = registry(concurrency=1)
    rng = random.Random(1)
    dispatcher = Dispatcher(
        store,
        InstitutionGateway(adapter, reg, hedge=True, rng=rng),
        clock,
        DispatchSettings().policy(),
        rng,
    )
    records = [requested_hold() for _ in range(3)]
    for record in records:
        store.add(record)
    for record in records:
        claim = await dispatcher.claim(record.hold.id, first=True)
        assert claim is not None
        dispatcher.start(claim)
    await asyncio.sleep(0)
    lease = store.holds[records[0].hold.id].next_attempt_at
    assert lease is not None
    clock.at = lease + timedelta(seconds=1)  # every lease has run out: they all still wait
    await dispatcher.sweep_once()
    for record in records:
        stored = store.holds[record.hold.id]
        assert stored.attempts == 1  # nobody claimed them again
        assert stored.next_attempt_at is not None and stored.next_attempt_at > clock.at
    adapter.open.set()
    await dispatcher.wait_idle()
    assert len(adapter.requests) == 3
    assert all(store.holds[r.hold.id].hold.state is HoldState.STOPPED for r in records)
    # Once done, nothing is left to renew.
    clock.at += timedelta(seconds=30)
    assert await dispatcher.renew_leases() == 0


ONE_TRY = RetryPolicy(max_attempts=1, initial_backoff_ms=10, max_backoff_ms=20, deadline_s=60)


async def died_during_the_last_attempt() -> tuple[
    Dispatcher, FakeDispatchStore, ScriptedAdapter, FixedClock, HoldRecord
]:
    """A hold whose only attempt was claimed by a process that died before recording its
    outcome (the request may or may not have left), its lease run out, swept by a survivor."""
    dispatcher, store, adapter, clock = setup([STOPPED], registry(retry=ONE_TRY))
    record = requested_hold()
    store.add(record)
    assert await dispatcher.claim(record.hold.id, first=True) is not None  # then: killed
    lease = store.holds[record.hold.id].next_attempt_at
    assert lease is not None
    clock.at = lease + timedelta(seconds=1)
    await dispatcher.sweep_once()
    await dispatcher.wait_idle()
    return dispatcher, store, adapter, clock, record


async def test_a_last_attempt_whose_lease_ran_out_is_asked_about_not_given_up() -> None:
    dispatcher, store, adapter, clock, record = await died_during_the_last_attempt()
    key = f"stopper-{record.hold.id}-0"
    stored = store.holds[record.hold.id]
    assert stored.hold.state is HoldState.UNCONFIRMED  # not failed: it may have reached BK01
    assert "lease ran out" in (stored.state_reason or "")
    assert adapter.requests == []  # no attempt is left, so none is made
    adapter.status_script["BK01"] = [StopStatus(key, StatusKind.ANSWERED, record.hold.id, STOPPED)]
    await run_until_settled(dispatcher, clock, 5)
    stored = store.holds[record.hold.id]
    assert stored.hold.state is HoldState.STOPPED  # it had: the inquiry found the stop
    assert adapter.statuses == [key]
    assert [(t.from_state, t.to_state) for t in store.transitions] == [
        (HoldState.REQUESTED, HoldState.SENT),
        (HoldState.SENT, HoldState.UNCONFIRMED),
        (HoldState.UNCONFIRMED, HoldState.STOPPED),
    ]


async def test_a_lapsed_last_attempt_the_institution_never_received_fails() -> None:
    dispatcher, store, adapter, clock, record = await died_during_the_last_attempt()
    key = f"stopper-{record.hold.id}-0"
    adapter.status_script["BK01"] = [StopStatus(key, StatusKind.UNKNOWN)]
    await run_until_settled(dispatcher, clock, 5)
    stored = store.holds[record.hold.id]
    assert stored.hold.state is HoldState.FAILED
    assert "none of 1 unanswered attempts reached it" in (stored.state_reason or "")
    assert adapter.requests == []  # never sent again: no attempt was left


async def test_a_request_accepted_on_its_last_attempt_and_lost_fails_saying_so() -> None:
    """The institution accepted the last attempt the budget allowed, then had no record of it:
    nothing is stopped, no attempt is left, and the reason says what happened."""
    reg = registry(callback_wait_s=5.0, retry=ONE_TRY)
    dispatcher, store, adapter, clock = setup([ACCEPTED, STOPPED], reg)
    record = requested_hold()
    store.add(record)
    key = f"stopper-{record.hold.id}-0"
    adapter.status_script["BK01"] = [StopStatus(key, StatusKind.UNKNOWN)]
    await dispatcher.attempt(record.hold.id, first=True)
    await run_until_settled(dispatcher, clock, 6)
    stored = store.holds[record.hold.id]
    assert stored.hold.state is HoldState.FAILED
    assert "no record of the request it accepted" in (stored.state_reason or "")
    assert len(adapter.requests) == 1
    assert store.transitions[-1].from_state is HoldState.UNCONFIRMED


async def test_attempts_an_open_breaker_stopped_cost_no_attempt_of_the_budget() -> None:
    """A herd of holds waiting on an institution whose breaker is open does not use up its
    retry budget without reaching it: only the deadline bounds those."""
    reg = registry(
        breaker=BreakerPolicy(failure_threshold=1, cooldown_s=0.2),
        retry=RetryPolicy(max_attempts=2, initial_backoff_ms=10, max_backoff_ms=20, deadline_s=60),
    )
    dispatcher, store, _, clock = setup([InstitutionUnavailable("503"), STOPPED], reg)
    first = requested_hold()
    store.add(first)
    await dispatcher.attempt(first.hold.id, first=True)  # 503: the breaker opens
    herd = [requested_hold() for _ in range(5)]
    for record in herd:
        store.add(record)
        await dispatcher.attempt(record.hold.id, first=True)  # not made: breaker open
    for _ in range(3):  # each hold meets the open breaker again before it closes
        clock.at += timedelta(seconds=1)
        await dispatcher.sweep_once()
        await dispatcher.wait_idle()
    assert {store.holds[r.hold.id].hold.state for r in herd} == {HoldState.SENT}
    assert all(store.holds[r.hold.id].attempts == 0 for r in herd)
    await asyncio.sleep(0.25)  # the cooldown passes; the next attempt probes and succeeds
    await run_until_settled(dispatcher, clock, 5)
    assert {store.holds[r.hold.id].hold.state for r in [first, *herd]} == {HoldState.STOPPED}


async def test_money_that_reached_a_hold_of_the_case_again_is_merged_into_it() -> None:
    onward = (OnwardTransfer(OnwardKind.TRANSFER, 30_000, NOW, "PI02", "880011112222"),)
    dispatcher, store, _, _ = setup(
        [InstitutionAnswer(AnswerKind.STOPPED, amount_held=60_000, onward=onward)]
    )
    record = requested_hold(amount=100_000, at=NOW)
    sibling = Hold(uuid4(), record.hold.case_id, "PI02", "880011112222", "CNY", 20_000)
    store.add(record)
    store.add(new_record(sibling, NOW, NOW))
    await dispatcher.attempt(record.hold.id, first=True)
    merged = store.holds[sibling.id].hold
    assert (merged.state, merged.amount_asked, merged.version) == (HoldState.REQUESTED, 50_000, 2)
    assert [
        (t.event, t.from_state, t.to_state) for t in store.transitions if t.hold_id == sibling.id
    ] == [(HoldEvent.MERGED, HoldState.REQUESTED, HoldState.REQUESTED)]
    assert [e.outcome.value for e in store.edges] == ["merged"]
