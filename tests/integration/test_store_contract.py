"""The store's contract: what the use cases rely on, held against the unit fake, SQLite and the
real PostgreSQL alike (cosmicpython's repository tests), so the fake cannot drift.

Every test records cases of its own (unique report ids); the sweeps see the whole database,
so their results are checked for this test's holds only.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from uuid import UUID, uuid4

import pytest

from stopper.adapters.db import migrate
from stopper.adapters.db.engine import create_engine
from stopper.adapters.db.store import SqlStore
from stopper.app.hold_changes import (
    Accepted,
    AttemptClaimed,
    Backoff,
    Confirmed,
    FreezeOrdered,
    Frozen,
    HoldChange,
    Order,
    OrderLeased,
    ReleaseOrdered,
    ReturnOrdered,
    WarningsSent,
)
from stopper.app.intake import parse_report, to_opened_case
from stopper.app.mules import MuleStore
from stopper.app.ports import (
    CallbackNonce,
    CaseFunds,
    DeadlineStore,
    DispatchStore,
    FreezeStore,
    HoldRecord,
    HoldUpdate,
    IntakeStore,
    OpenedCase,
    OutboxEvent,
    OutboxMessage,
    Payout,
    ReconcileItem,
    ReconcileStore,
    ReleaseStore,
    ReturnStart,
    ReturnStore,
    VictimTransfer,
)
from stopper.app.reverify_ports import JobState, ReverifyProgress, ReverifyStore
from stopper.app.supplement_ports import SupplementRecord, SupplementStore, SupplementUpdate
from stopper.config import DatabaseSettings
from stopper.contracts.amounts import format_amount
from stopper.contracts.webhooks import CaseEventV1
from stopper.domain.accounts import account_id
from stopper.domain.cases import hold_id_for
from stopper.domain.holds import HoldEvent, HoldState, idempotency_key_for
from stopper.domain.messages import OnwardKind, OnwardTransfer
from stopper.registry import load_registry
from tests.factories import fresh_account, naming_doc, report_doc, stop_and_follow
from tests.servers import create_database, drop_database
from tests.unit.fakes import FakeDispatchStore

pytestmark = pytest.mark.integration

STOP_REQUESTS = "contract.stop-requests"
CASE_EVENTS = "stopper.case-events"  # the default of both stores


class Store(
    IntakeStore,
    DispatchStore,
    DeadlineStore,
    FreezeStore,
    ReturnStore,
    ReconcileStore,
    ReleaseStore,
    SupplementStore,
    MuleStore,
    ReverifyStore,
    Protocol,
):
    """Every port the use cases ask of the store, and what tests and the console read back."""

    async def case_fingerprint(self, case_id: UUID) -> str | None: ...

    async def get_hold(self, hold_id: UUID) -> HoldRecord | None: ...

    async def returns_due(self, now: datetime, limit: int) -> list[UUID]: ...

    async def relay_outbox(
        self, publish: Callable[[Sequence[OutboxMessage]], Awaitable[None]], limit: int
    ) -> int: ...


class _Databases:
    """The PostgreSQL database of this module, made the first time a test asks for it."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self._request = request
        self.url: str | None = None

    async def postgres(self) -> str:
        if self.url is None:
            server: str = self._request.getfixturevalue("postgres_url")
            self.url = await create_database(server, "contract")
            engine = create_engine(DatabaseSettings(url=self.url))
            await migrate.upgrade(engine)
            await engine.dispose()
        return self.url


@pytest.fixture(scope="module")
async def databases(request: pytest.FixtureRequest) -> AsyncIterator[_Databases]:
    made = _Databases(request)
    yield made
    if made.url is not None:
        await drop_database(made.url)


@pytest.fixture(params=["fake", "sqlite", "postgres"])
async def store(
    request: pytest.FixtureRequest, databases: _Databases, tmp_path: Path
) -> AsyncIterator[Store]:
    if request.param == "fake":
        yield FakeDispatchStore(STOP_REQUESTS)
        return
    if request.param == "sqlite":
        engine = create_engine(DatabaseSettings(embedded_path=tmp_path / "contract.db"))
        await migrate.upgrade(engine)
    else:
        engine = create_engine(DatabaseSettings(url=await databases.postgres()))
    try:
        yield SqlStore(engine, STOP_REQUESTS)
    finally:
        await engine.dispose()


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def opened_case(at: datetime | None = None, doc: dict[str, Any] | None = None) -> OpenedCase:
    """A case opened from `doc` (a new report by default)."""
    at = at or _now()
    report = parse_report(json.dumps(doc or report_doc()).encode(), load_registry())
    return to_opened_case(report, accepted_at=at, opened_at=at, source="http")


async def recorded(store: Store, at: datetime | None = None) -> OpenedCase:
    case = opened_case(at)
    outcome = await store.record_opened_cases([case])
    assert outcome.created == [case.case.id]
    return case


async def moved(
    store: Store,
    hold_id: UUID,
    *events: HoldEvent,
    change: HoldChange | None = None,
    at: datetime | None = None,
    amount: int | None = None,
) -> HoldRecord:
    """The hold moved by `events` (an amount for those that need one: all of it by default),
    with `change` written; as stored afterwards."""
    at = at or _now()

    def decide(record: HoldRecord) -> HoldUpdate:
        hold = record.hold
        moves = []
        for event in events:
            needed = {
                HoldEvent.STOP_CONFIRMED: hold.amount_asked,
                HoldEvent.FREEZE_CONFIRMED: hold.amount_stopped,
                HoldEvent.RETURN_CONFIRMED: hold.amount_frozen,
            }.get(event)
            given = None if needed is None else (amount if amount is not None else needed)
            moves.append(hold.apply(event, cause="test", actor="test", at=at, amount=given))
        return HoldUpdate(at=at, transitions=moves, change=change)

    assert await store.update_hold(hold_id, decide) is not None
    stored = await store.get_hold(hold_id)
    assert stored is not None
    return stored


def _ours(found: Sequence[UUID], *ids: UUID) -> list[UUID]:
    return [h for h in found if h in ids]


# Intake.


async def test_a_case_recorded_twice_is_created_once(store: Store) -> None:
    case = await recorded(store)
    again = await store.record_opened_cases([case])
    assert (again.created, again.already_known) == ([], {case.case.id: case.fingerprint})
    assert await store.case_fingerprint(case.case.id) == case.fingerprint
    assert await store.case_fingerprint(uuid4()) is None
    for hold in case.case.holds:
        stored = await store.get_hold(hold.id)
        assert stored is not None
        assert (stored.hold.state, stored.hold.version, stored.attempts) == (
            HoldState.REQUESTED,
            1,
            0,
        )
        assert stored.hold.amount_asked == hold.amount_asked


async def test_a_claim_decided_at_intake_is_written_with_its_new_hold_only(store: Store) -> None:
    at = _now()

    def claim(record: HoldRecord) -> HoldUpdate:
        sent = record.hold.apply(HoldEvent.REQUEST_SENT, cause="claim", actor="test", at=at)
        lease = AttemptClaimed(1, at + timedelta(seconds=5), at + timedelta(minutes=5), at)
        return HoldUpdate(at=at, transitions=[sent], change=lease)

    doc = report_doc()
    case = opened_case(at, doc)
    outcome = await store.record_opened_cases([case], claim)
    assert {r.hold.id for r, _ in outcome.claimed} == {h.id for h in case.case.holds}
    for hold in case.case.holds:
        stored = await store.get_hold(hold.id)
        assert stored is not None
        assert (stored.hold.state, stored.hold.version, stored.attempts) == (HoldState.SENT, 2, 1)
        assert stored.next_attempt_at == at + timedelta(seconds=5)
        assert stored.sent_at == at
    new = opened_case(at)
    again = await store.record_opened_cases([new, opened_case(at, doc)], claim)  # redelivered
    assert {r.hold.id for r, _ in again.claimed} == {h.id for h in new.case.holds}


async def test_the_transfers_are_the_victims_money_into_each_first_level_hold(
    store: Store,
) -> None:
    case = await recorded(store)
    seen: list[CaseFunds] = []

    def look(funds: CaseFunds) -> list[ReturnStart]:
        seen.append(funds)
        return []

    assert await store.start_returns(case.case.id, look) == []
    [funds] = seen
    assert list(funds.transfers) == [
        VictimTransfer(
            t.victim_ref,
            hold_id_for(case.case.id, t.receiving_account),
            t.currency,
            t.amount,
            t.victim_account.institution_code,
            t.victim_account.account_number,
        )
        for t in case.case.transfers
    ]
    assert {r.hold.id for r in funds.holds} == {h.id for h in case.case.holds}
    assert (funds.edges, funds.payouts) == ([], [])


# The hold's unit of work.


async def test_no_hold_or_no_change_writes_nothing(store: Store) -> None:
    case = await recorded(store)
    hold_id = case.case.holds[0].id
    assert await store.update_hold(uuid4(), lambda r: HoldUpdate(at=_now())) is None
    assert await store.update_hold(hold_id, lambda r: None) is None
    stored = await store.get_hold(hold_id)
    assert stored is not None and stored.hold.version == 1
    assert await store.get_hold(uuid4()) is None


async def test_every_write_moves_the_version_on_once(store: Store) -> None:
    case = await recorded(store)
    hold_id = case.case.holds[0].id
    at = _now()
    backoff = await moved(store, hold_id, change=Backoff(at + timedelta(seconds=3), "why"))
    assert (backoff.hold.version, backoff.next_attempt_at, backoff.state_reason) == (
        2,
        at + timedelta(seconds=3),
        "why",
    )
    two = await moved(store, hold_id, HoldEvent.REQUEST_SENT, HoldEvent.GAVE_UP)
    assert (two.hold.state, two.hold.version) == (HoldState.FAILED, 3)


async def test_racing_writers_lose_no_change(store: Store) -> None:
    case = await recorded(store)
    ids = [h.id for h in case.case.holds]
    at = _now()

    def one_more(record: HoldRecord) -> HoldUpdate:
        return HoldUpdate(at=at, change=AttemptClaimed(record.attempts + 1, at, at, at))

    await asyncio.gather(
        *[store.update_holds({h: one_more for h in ids}) for _ in range(3)],
        *[store.update_holds({h: one_more for h in reversed(ids)}) for _ in range(3)],
        *[store.update_hold(h, one_more) for h in ids for _ in range(2)],
    )
    for hold_id in ids:
        stored = await store.get_hold(hold_id)
        assert stored is not None
        assert (stored.attempts, stored.hold.version) == (8, 9)


async def test_a_callback_nonce_lets_its_decision_run_once(store: Store) -> None:
    case = await recorded(store)
    hold_id = case.case.holds[0].id
    nonce = {hold_id: CallbackNonce("BK01", uuid4().hex, _now())}
    runs: list[UUID] = []

    def decide(record: HoldRecord) -> HoldUpdate:
        runs.append(record.hold.id)
        return HoldUpdate(at=_now(), change=WarningsSent(record.warnings_sent + 1))

    replayed: set[UUID] = set()
    assert len(await store.update_holds({hold_id: decide}, nonce, replayed)) == 1
    assert await store.update_holds({hold_id: decide}, nonce, replayed) == []
    assert (runs, replayed) == ([hold_id], {hold_id})


async def test_a_return_decided_on_a_stale_version_is_decided_again(store: Store) -> None:
    case = await recorded(store)
    hold_id = case.case.holds[0].id
    at = _now()
    frozen = await moved(
        store,
        hold_id,
        HoldEvent.REQUEST_SENT,
        HoldEvent.STOP_CONFIRMED,
        HoldEvent.FREEZE_CONFIRMED,
        change=Frozen(at + timedelta(days=30)),
    )
    decided: list[int] = []

    def decide(funds: CaseFunds) -> list[ReturnStart]:
        [record] = [r for r in funds.holds if r.hold.id == hold_id]
        decided.append(record.hold.version)
        version = record.hold.version - (1 if len(decided) == 1 else 0)  # stale the first time
        started = record.hold.apply(HoldEvent.RETURN_STARTED, cause="t", actor="t", at=at)
        update = HoldUpdate(
            at=at,
            transitions=[started],
            change=ReturnOrdered("DOC-1", 1, next_attempt_at=at, reason=None),
        )
        payout = Payout(hold_id, 1, "V1", "CNY", record.hold.amount_frozen, "BK02", "6222")
        return [ReturnStart(hold_id, version, update, [payout])]

    starts = await store.start_returns(case.case.id, decide)
    assert starts is not None and len(starts) == 1
    assert decided == [frozen.hold.version, frozen.hold.version]
    stored = await store.get_hold(hold_id)
    assert stored is not None
    assert (stored.hold.state, stored.hold.version, stored.return_round) == (
        HoldState.RETURNING,
        frozen.hold.version + 1,
        1,
    )
    [payout] = await store.payouts_of(hold_id, 1)
    assert (payout.status, payout.amount) == ("pending", frozen.hold.amount_frozen)
    assert _ours(await store.returns_due(at, 10_000), hold_id) == [hold_id]
    await store.update_hold(hold_id, lambda r: HoldUpdate(at=at, settle_payouts="paid"))
    assert [p.status for p in await store.payouts_of(hold_id, 1)] == ["paid"]
    assert await store.start_returns(uuid4(), decide) is None


# The sweepers' queries.


async def test_due_holds_are_the_unsent_past_grace_and_the_attempts_past_their_lease(
    store: Store,
) -> None:
    at = _now()
    case = await recorded(store, at)
    unsent, sent = (h.id for h in case.case.holds)
    other = await recorded(store, at)
    unconfirmed = other.case.holds[0].id
    lease = AttemptClaimed(1, at + timedelta(seconds=10), at + timedelta(minutes=5), at)
    await moved(store, sent, HoldEvent.REQUEST_SENT, change=lease)
    accepted = Accepted(at, at + timedelta(seconds=20), at + timedelta(hours=1), "owed")
    await moved(store, unconfirmed, HoldEvent.REQUEST_SENT, HoldEvent.ACCEPTED, change=accepted)
    ids = (unsent, sent, unconfirmed)
    assert _ours(await store.due_holds(at, at - timedelta(seconds=1), 10_000), *ids) == []
    assert _ours(await store.due_holds(at, at, 10_000), *ids) == [unsent]
    later = at + timedelta(seconds=15)
    assert set(_ours(await store.due_holds(later, at, 10_000), *ids)) == {unsent, sent}
    latest = at + timedelta(seconds=25)
    assert set(_ours(await store.due_holds(latest, at, 10_000), *ids)) == set(ids)


async def test_a_lease_is_renewed_only_for_its_attempt_and_never_shortened(store: Store) -> None:
    at = _now()
    case = await recorded(store, at)
    hold_id = case.case.holds[0].id
    lease = AttemptClaimed(1, at + timedelta(seconds=5), at + timedelta(minutes=5), at)
    await moved(store, hold_id, HoldEvent.REQUEST_SENT, change=lease)
    assert await store.renew_leases({hold_id: 2}, at + timedelta(seconds=30)) == []
    assert await store.renew_leases({hold_id: 1}, at + timedelta(seconds=2)) == []
    assert await store.renew_leases({hold_id: 1}, at + timedelta(seconds=30)) == [hold_id]
    stored = await store.get_hold(hold_id)
    assert stored is not None and stored.next_attempt_at == at + timedelta(seconds=30)
    assert await store.renew_leases({case.case.holds[1].id: 0}, at + timedelta(hours=1)) == []


async def test_the_deadline_sweep_finds_warnings_owed_and_lapses_soonest_first(
    store: Store,
) -> None:
    at = _now()
    case = await recorded(store, at)
    later, sooner = (h.id for h in case.case.holds)
    before = await store.count_expiring(at, timedelta(minutes=90))
    for hold_id, hours in ((later, 2), (sooner, 1)):
        confirmed = Confirmed(None, confirmed_at=at, stop_expires_at=at + timedelta(hours=hours))
        await moved(
            store, hold_id, HoldEvent.REQUEST_SENT, HoldEvent.STOP_CONFIRMED, change=confirmed
        )
    assert await store.count_expiring(at, timedelta(minutes=90)) == before + 1
    leads = [timedelta(hours=3)]
    found = await store.holds_near_deadline(at, leads, leads, 10_000)
    assert _ours(found, later, sooner) == [sooner, later]
    await moved(store, later, change=WarningsSent(1))
    found = await store.holds_near_deadline(at, leads, leads, 10_000)
    assert _ours(found, later, sooner) == [sooner]
    lapsed = await store.holds_near_deadline(at + timedelta(hours=2), leads, leads, 10_000)
    assert _ours(lapsed, later, sooner) == [sooner, later]


async def test_freezes_due_are_ordered_freezes_of_holds_that_may_be_frozen(store: Store) -> None:
    at = _now()
    case = await recorded(store, at)
    stopped, requested = (h.id for h in case.case.holds)
    order = FreezeOrdered("DOC-F", next_attempt_at=at - timedelta(seconds=1), reason="ordered")
    await moved(store, stopped, HoldEvent.REQUEST_SENT, HoldEvent.STOP_CONFIRMED, change=order)
    await moved(store, requested, change=order)  # not freezable: a stop was never confirmed
    assert _ours(await store.freezes_due(at, 10_000), stopped, requested) == [stopped]
    assert _ours(await store.freezes_due(at - timedelta(seconds=2), 10_000), stopped) == []


async def test_releases_due_are_releasing_holds_past_their_next_attempt_soonest_first(
    store: Store,
) -> None:
    at = _now()
    first, second = [await recorded(store, at) for _ in range(2)]
    later, sooner = (h.id for h in first.case.holds)
    stopped, _ = (h.id for h in second.case.holds)
    for hold_id, seconds in ((later, 5), (sooner, 10)):
        order = ReleaseOrdered(
            "report_withdrawn", next_attempt_at=at - timedelta(seconds=seconds), reason="r"
        )
        await moved(store, hold_id, HoldEvent.RELEASE_ORDERED, change=order)
    # Bookkeeping of a release on a hold that is not releasing is not a release due.
    stray = ReleaseOrdered("account_cleared", next_attempt_at=at, reason="r")
    await moved(store, stopped, HoldEvent.REQUEST_SENT, HoldEvent.STOP_CONFIRMED, change=stray)
    assert _ours(await store.releases_due(at, 10_000), later, sooner, stopped) == [sooner, later]
    assert _ours(await store.releases_due(at - timedelta(seconds=7), 10_000), later, sooner) == [
        sooner
    ]
    # A lease moves the next attempt on; the record keeps the ground and counts the attempt.
    leased = await moved(
        store, sooner, change=OrderLeased(Order.RELEASE, 1, at + timedelta(seconds=30))
    )
    assert (leased.hold.state, leased.release_ground, leased.release_attempts) == (
        HoldState.RELEASING,
        "report_withdrawn",
        1,
    )
    assert _ours(await store.releases_due(at, 10_000), later, sooner) == [later]


async def test_a_case_s_hold_ids_are_all_its_holds_and_none_for_no_case(store: Store) -> None:
    at = _now()
    case = await recorded(store, at)
    assert await store.case_hold_ids(case.case.id) == sorted(h.id for h in case.case.holds)
    assert await store.case_hold_ids(uuid4()) is None


async def test_holds_to_reconcile_are_the_unconfirmed_and_the_given_up_after_a_request(
    store: Store,
) -> None:
    at = _now()
    case = await recorded(store, at)
    unconfirmed, given_up = (h.id for h in case.case.holds)
    never_sent = (await recorded(store, at)).case.holds[0].id
    accepted = Accepted(at - timedelta(hours=1), at, at + timedelta(hours=1), "owed")
    await moved(store, unconfirmed, HoldEvent.REQUEST_SENT, HoldEvent.ACCEPTED, change=accepted)
    lease = AttemptClaimed(1, at, at, at)
    await moved(store, given_up, HoldEvent.REQUEST_SENT, HoldEvent.GAVE_UP, change=lease)
    await moved(store, never_sent, HoldEvent.GAVE_UP)
    codes = {h.institution_code for h in case.case.holds}

    async def to_reconcile(accepted_before: datetime) -> dict[UUID, ReconcileItem]:
        return {
            item.hold_id: item
            for code in codes
            for item in await store.holds_to_reconcile(code, accepted_before, 10_000)
            if item.hold_id in (unconfirmed, given_up, never_sent)
        }

    found = await to_reconcile(at - timedelta(minutes=30))
    assert set(found) == {unconfirmed, given_up}
    assert found[unconfirmed].idempotency_key == idempotency_key_for(unconfirmed, 0)
    assert (found[unconfirmed].state, found[given_up].state) == (
        HoldState.UNCONFIRMED,
        HoldState.FAILED,
    )
    assert set(await to_reconcile(at - timedelta(hours=2))) == {given_up}


# The outbox and the trail.


async def _relayed(store: Store) -> list[OutboxMessage]:
    published: list[OutboxMessage] = []

    async def publish(messages: Sequence[OutboxMessage]) -> None:
        published.extend(messages)

    while await store.relay_outbox(publish, 1_000):
        pass
    return published


async def test_events_leave_through_the_outbox_once(store: Store) -> None:
    case = await recorded(store)
    await _relayed(store)
    topic = f"contract.events.{uuid4().hex[:8]}"
    event = OutboxEvent(topic, "k1", {"event": "test", "n": 1})
    await store.update_hold(case.case.holds[0].id, lambda r: HoldUpdate(at=_now(), events=[event]))
    [message] = [m for m in await _relayed(store) if m.topic == topic]
    assert (message.key, dict(message.payload)) == ("k1", {"event": "test", "n": 1})
    assert [m for m in await _relayed(store) if m.topic == topic] == []


async def test_a_trail_followed_adds_holds_with_their_stop_requests_and_moves_merged_ones_on(
    store: Store,
) -> None:
    case = await recorded(store)
    await _relayed(store)
    [mule] = [h for h in case.case.holds if h.institution_code == "BK01"]
    [other] = [h for h in case.case.holds if h.institution_code == "PI04"]
    at = _now()
    onward = [
        OnwardTransfer(
            OnwardKind.TRANSFER, 30_000, at, other.institution_code, other.account_number
        ),
        OnwardTransfer(OnwardKind.TRANSFER, 20_000, at, "BK03", f"6222{uuid4().int % 10**12:012d}"),
    ]

    await store.update_hold(mule.id, stop_and_follow(onward, 50_000, at))
    merged = await store.get_hold(other.id)
    assert merged is not None
    assert (merged.hold.amount_asked, merged.hold.version, merged.hold.state) == (
        other.amount_asked + 30_000,
        2,
        HoldState.REQUESTED,
    )
    requests = [m for m in await _relayed(store) if m.topic == STOP_REQUESTS]
    [request] = requests
    new = await store.get_hold(UUID(str(request.key)))
    assert new is not None
    assert (new.hold.layer, new.hold.parent_id, new.hold.amount_asked) == (2, mule.id, 20_000)
    assert (new.hold.state, new.hold.version) == (HoldState.REQUESTED, 1)
    assert request.payload["hold_id"] == str(new.hold.id)


async def test_case_events_are_written_with_the_changes_that_cause_them(store: Store) -> None:
    case = await recorded(store)
    [mule] = [h for h in case.case.holds if h.institution_code == "BK01"]
    [other] = [h for h in case.case.holds if h.institution_code == "PI04"]
    await moved(store, mule.id, HoldEvent.REQUEST_SENT, HoldEvent.STOP_CONFIRMED)
    await moved(store, mule.id, change=WarningsSent(1))
    await moved(store, other.id, HoldEvent.REQUEST_SENT)  # nothing to tell
    await moved(store, other.id, HoldEvent.GAVE_UP)
    told = [
        m for m in await _relayed(store) if m.topic == CASE_EVENTS and m.key == str(case.case.id)
    ]
    events = [CaseEventV1.model_validate(m.payload) for m in told]
    assert [e.type.value for e in events] == [
        "case_opened",
        "hold_stopped",
        "stop_expiring",
        "hold_failed",
    ]
    assert {e.report_id for e in events} == {case.case.report_id}
    assert [e.hold_id for e in events] == [None, mule.id, mule.id, other.id]
    assert events[1].data["account"] == "****" + mule.account_number[-4:]
    assert mule.account_number not in json.dumps([m.payload for m in told])


# Supplements.


async def merged_into_stopped(store: Store, *amounts: int) -> tuple[OpenedCase, UUID, UUID]:
    """A case whose PI04 hold is stopped when the BK01 hold's answer sends `amounts` on into
    the PI04 account: the case, the BK01 hold, the PI04 hold."""
    case = await recorded(store)
    await _relayed(store)
    [mule] = [h for h in case.case.holds if h.institution_code == "BK01"]
    [other] = [h for h in case.case.holds if h.institution_code == "PI04"]
    await moved(store, other.id, HoldEvent.REQUEST_SENT, HoldEvent.STOP_CONFIRMED)
    at = _now()
    onward = [
        OnwardTransfer(OnwardKind.TRANSFER, a, at, other.institution_code, other.account_number)
        for a in amounts
    ]
    await store.update_hold(mule.id, stop_and_follow(onward, sum(amounts), at))
    return case, mule.id, other.id


async def test_a_merge_into_a_stopped_hold_writes_a_supplement_per_merge_with_its_request(
    store: Store,
) -> None:
    case, mule, other = await merged_into_stopped(store, 30_000, 5_000)
    [born] = [h for h in case.case.holds if h.id == other]
    stored = await store.get_hold(other)
    assert stored is not None
    hold = stored.hold
    assert (hold.state, hold.amount_asked, hold.amount_first_request, hold.supplements) == (
        HoldState.STOPPED,
        born.amount_asked + 35_000,
        born.amount_asked,
        2,
    )
    supplements = await store.supplements_of(other)
    assert [
        (s.supplement.number, s.supplement.amount, s.supplement.state, s.attempts)
        for s in supplements
    ] == [(1, 30_000, HoldState.REQUESTED, 0), (2, 5_000, HoldState.REQUESTED, 0)]
    assert {(s.supplement.merged_from, s.supplement.generation) for s in supplements} == {(mule, 0)}
    requests = [m for m in await _relayed(store) if m.topic == STOP_REQUESTS]
    assert [(m.key, m.payload["idempotency_key"], m.payload["amount"]) for m in requests] == [
        (str(other), f"stopper-{other}-s1", format_amount(30_000)),
        (str(other), f"stopper-{other}-s2", format_amount(5_000)),
    ]
    assert requests[0].payload["supplement"] == {
        "number": 1,
        "adds_to": f"stopper-{other}-0",
        "merged_from_hold_id": str(mule),
    }
    assert await store.supplements_of(mule) == []
    # The onward transfers are kept as the trail's edges, merged ones too.
    seen: list[CaseFunds] = []

    def look(funds: CaseFunds) -> list[ReturnStart]:
        seen.append(funds)
        return []

    await store.start_returns(case.case.id, look)
    assert sorted(e.amount for e in seen[0].edges if e.to_hold == other) == [5_000, 30_000]


async def test_a_merge_into_a_requested_hold_raises_what_its_first_request_asks(
    store: Store,
) -> None:
    case = await recorded(store)
    [mule] = [h for h in case.case.holds if h.institution_code == "BK01"]
    [other] = [h for h in case.case.holds if h.institution_code == "PI04"]
    at = _now()
    onward = [OnwardTransfer(OnwardKind.TRANSFER, 30_000, at, "PI04", other.account_number)]
    await store.update_hold(mule.id, stop_and_follow(onward, 30_000, at))
    stored = await store.get_hold(other.id)
    assert stored is not None
    assert (stored.hold.amount_first_request, stored.hold.supplements) == (
        other.amount_asked + 30_000,
        0,
    )
    assert stored.hold.stop_request(at).amount == other.amount_asked + 30_000
    assert await store.supplements_of(other.id) == []


def _supplement_step(
    event: HoldEvent, at: datetime, amount: int | None = None, *, attempt: bool = True
) -> Callable[[HoldRecord, SupplementRecord], SupplementUpdate]:
    """A decision moving the supplement by `event` and recording it on its hold; `attempt`:
    counted as an attempt, the next due 5 s later (else nothing is due)."""

    def decide(record: HoldRecord, s: SupplementRecord) -> SupplementUpdate:
        s.supplement.apply(event, amount)
        moved = s.supplement.record_on(record.hold, event, cause="test", actor="test", at=at)
        progress = (
            dataclasses.replace(
                s, attempts=s.attempts + 1, next_attempt_at=at + timedelta(seconds=5)
            )
            if attempt
            else dataclasses.replace(s, next_attempt_at=None)
        )
        return SupplementUpdate(HoldUpdate(at=at, transitions=[moved] if moved else []), progress)

    return decide


async def test_a_supplement_is_decided_with_its_hold_and_both_are_written(store: Store) -> None:
    _, _, other = await merged_into_stopped(store, 30_000)
    before = await store.get_hold(other)
    assert before is not None
    at = _now()
    fresh, written = await store.update_supplement(
        other, 1, _supplement_step(HoldEvent.REQUEST_SENT, at)
    )
    assert fresh and written is not None
    record, as_read, update = written
    assert (record.hold.id, as_read.supplement.number) == (other, 1)
    assert update.supplement.attempts == 1  # as written
    await store.update_supplement(other, 1, _supplement_step(HoldEvent.STOP_CONFIRMED, at, 20_000))
    stored = await store.get_hold(other)
    assert stored is not None
    assert stored.hold.version == before.hold.version + 2
    assert stored.hold.state is HoldState.STOPPED
    assert (stored.hold.amount_stopped, stored.hold.amount_stopped_by_supplements) == (
        before.hold.amount_stopped + 20_000,
        20_000,
    )
    [s] = await store.supplements_of(other)
    assert (s.supplement.state, s.supplement.amount_held, s.attempts) == (
        HoldState.STOPPED,
        20_000,
        2,
    )
    assert s.next_attempt_at == at + timedelta(seconds=5)
    # Nothing to decide on, or nothing decided: nothing written.
    assert await store.update_supplement(other, 2, _supplement_step(HoldEvent.GAVE_UP, at)) == (
        True,
        None,
    )
    assert await store.update_supplement(uuid4(), 1, _supplement_step(HoldEvent.GAVE_UP, at)) == (
        True,
        None,
    )
    assert await store.update_supplement(other, 1, lambda r, s: None) == (True, None)
    after = await store.get_hold(other)
    assert after is not None and after.hold.version == stored.hold.version


async def test_a_supplement_callback_nonce_lets_its_decision_run_once(store: Store) -> None:
    _, _, other = await merged_into_stopped(store, 30_000)
    at = _now()
    nonce = CallbackNonce("PI04", f"n-{uuid4().hex}", at)
    step = _supplement_step(HoldEvent.REQUEST_SENT, at)
    fresh, written = await store.update_supplement(other, 1, step, nonce)
    again, nothing = await store.update_supplement(other, 1, step, nonce)
    assert (fresh, written is not None, again, nothing) == (True, True, False, None)
    [s] = await store.supplements_of(other)
    assert s.attempts == 1


async def test_supplements_due_are_the_unsent_past_grace_and_the_sent_past_their_lease(
    store: Store,
) -> None:
    _, _, other = await merged_into_stopped(store, 30_000, 5_000)
    [first, _] = await store.supplements_of(other)
    at = first.supplement.requested_at
    await store.update_supplement(other, 1, _supplement_step(HoldEvent.REQUEST_SENT, at))

    async def due(now: datetime, requested_before: datetime) -> list[tuple[UUID, int]]:
        found = await store.supplements_due(now, requested_before, 10_000)
        return sorted(k for k in found if k[0] == other)

    assert await due(at, at - timedelta(seconds=1)) == []
    assert await due(at, at) == [(other, 2)]
    assert await due(at + timedelta(seconds=6), at) == [(other, 1), (other, 2)]
    await store.update_supplement(other, 2, _supplement_step(HoldEvent.GAVE_UP, at, attempt=False))
    assert await due(at + timedelta(seconds=6), at + timedelta(hours=1)) == [(other, 1)]


async def test_holds_to_reconcile_include_supplements_whose_outcome_is_unknown(
    store: Store,
) -> None:
    _, _, other = await merged_into_stopped(store, 30_000, 5_000, 1_000)
    at = _now()
    for number in (1, 2):
        await store.update_supplement(other, number, _supplement_step(HoldEvent.REQUEST_SENT, at))

    def accepted(record: HoldRecord, s: SupplementRecord) -> SupplementUpdate:
        s.supplement.apply(HoldEvent.ACCEPTED)
        return SupplementUpdate(
            HoldUpdate(at=at), dataclasses.replace(s, accepted_at=at - timedelta(hours=1))
        )

    await store.update_supplement(other, 1, accepted)
    await store.update_supplement(other, 2, _supplement_step(HoldEvent.GAVE_UP, at))
    never_sent = _supplement_step(HoldEvent.GAVE_UP, at, attempt=False)
    await store.update_supplement(other, 3, never_sent)
    stored = await store.get_hold(other)
    assert stored is not None

    found = {
        item.idempotency_key: item
        for item in await store.holds_to_reconcile(
            stored.hold.institution_code, at - timedelta(minutes=30), 10_000
        )
        if item.hold_id == other
    }
    # Supplement 3 was given up on before it was ever sent: nothing to ask about.
    assert {k: i.state for k, i in found.items()} == {
        f"stopper-{other}-s1": HoldState.UNCONFIRMED,
        f"stopper-{other}-s2": HoldState.FAILED,
    }
    later = await store.holds_to_reconcile(
        stored.hold.institution_code, at - timedelta(hours=2), 10_000
    )
    assert [i.idempotency_key for i in later if i.hold_id == other] == [f"stopper-{other}-s2"]


# The mule-account registry: read from the holds, never kept beside them.


def _hold_on(case: OpenedCase, account: tuple[str, str]) -> UUID:
    [hold] = [h for h in case.case.holds if (h.institution_code, h.account_number) == account]
    return hold.id


async def test_an_account_two_cases_name_is_a_known_mule_and_their_holds_say_so(
    store: Store,
) -> None:
    mule, other, twin = fresh_account(), fresh_account("PI04"), fresh_account("BK03")
    at = _now()
    first = opened_case(at, naming_doc(mule, other))
    assert (await store.record_opened_cases([first])).mule_cases == {}
    second = opened_case(at + timedelta(minutes=1), naming_doc(mule))
    outcome = await store.record_opened_cases([second])
    assert outcome.mule_cases == {_hold_on(second, mule): 2}
    # Two cases of one batch naming one account: each stop request knows of the other.
    pair = [opened_case(at, naming_doc(twin)) for _ in range(2)]
    both = await store.record_opened_cases(pair)
    assert both.mule_cases == {_hold_on(case, twin): 2 for case in pair}
    holds = [_hold_on(first, mule), _hold_on(second, mule), _hold_on(first, other), uuid4()]
    assert await store.mule_cases(holds) == {holds[0]: 2, holds[1]: 2}
    third = opened_case(at + timedelta(minutes=2), naming_doc(mule))
    assert (await store.record_opened_cases([third])).mule_cases == {_hold_on(third, mule): 3}
    assert await store.mule_cases(holds[:1]) == {holds[0]: 3}


async def test_two_writers_naming_one_account_at_once_both_flag_it(store: Store) -> None:
    """Nothing is counted on the write path, so two intakes racing (two workers, each with its
    own connection and transaction on PostgreSQL) cannot lose the flag between them."""
    mule = fresh_account("BK05")
    at = _now()
    racing = [opened_case(at, naming_doc(mule, fresh_account())) for _ in range(4)]
    await asyncio.gather(*(store.record_opened_cases([case]) for case in racing))
    holds = [_hold_on(case, mule) for case in racing]
    assert await store.mule_cases(holds) == {hold: 4 for hold in holds}
    found = await store.account_record(*mule, cases_listed=10)
    assert found is not None and found.cases == 4
    assert {c.case_id for c in found.recent_cases} == {case.case.id for case in racing}


async def test_an_account_the_money_trail_finds_is_named_by_that_case_too(store: Store) -> None:
    reported, mule = fresh_account("BK02"), fresh_account("PI04")
    at = _now()
    named = opened_case(at, naming_doc(mule))
    traced = opened_case(at, naming_doc(reported))
    await store.record_opened_cases([named, traced])
    onward = [OnwardTransfer(OnwardKind.TRANSFER, 10_000, at, *mule)]
    await store.update_hold(_hold_on(traced, reported), stop_and_follow(onward, 10_000, at))
    found = await store.account_record(*mule, cases_listed=10)
    assert found is not None and found.cases == 2
    assert {(c.case_id, c.layer) for c in found.recent_cases} == {
        (named.case.id, 1),
        (traced.case.id, 2),
    }
    naming = await store.cases_naming([account_id(*mule)], 10)
    assert {(n.case_id, n.account_masked) for n in naming} == {
        (named.case.id, "****" + mule[1][-4:]),
        (traced.case.id, "****" + mule[1][-4:]),
    }
    trail_hold = next(n for n in naming if n.case_id == traced.case.id)
    assert (trail_hold.agency_code, trail_hold.opened_at) == ("PSB-TEST", at)


async def test_an_account_record_says_when_it_was_named_and_what_was_stopped(
    store: Store,
) -> None:
    mule = fresh_account("BK06")
    at = _now()
    cases = [opened_case(at + timedelta(minutes=m), naming_doc(mule)) for m in (0, 5, 9)]
    await store.record_opened_cases(cases)
    await moved(store, _hold_on(cases[1], mule), HoldEvent.REQUEST_SENT, HoldEvent.STOP_CONFIRMED)
    found = await store.account_record(*mule, cases_listed=2)
    assert found is not None
    assert (found.institution_code, found.account_masked, found.cases) == (
        "BK06",
        "****" + mule[1][-4:],
        3,
    )
    assert (found.first_seen_at, found.last_seen_at) == (at, at + timedelta(minutes=9))
    assert found.amount_stopped == {"CNY": 15_000}
    assert [(c.case_id, c.state) for c in found.recent_cases] == [
        (cases[2].case.id, "requested"),
        (cases[1].case.id, "stopped"),
    ]
    # Nothing found, and nothing said, of an account no case names: a victim's own account.
    victim = cases[0].case.transfers[0].victim_account
    assert await store.account_record(victim.institution_code, victim.account_number, 2) is None
    assert await store.account_record(*fresh_account(), cases_listed=2) is None


async def test_the_flagged_accounts_are_paged_the_most_recently_named_first(
    store: Store,
) -> None:
    older, newer, once = fresh_account("BK07"), fresh_account("BK08"), fresh_account("BK09")
    at = _now() + timedelta(days=3650)  # later than any other test's cases: the first page
    await store.record_opened_cases(
        [
            opened_case(at, naming_doc(older)),
            opened_case(at + timedelta(minutes=1), naming_doc(older, once)),
            opened_case(at + timedelta(minutes=2), naming_doc(newer)),
            opened_case(at + timedelta(minutes=3), naming_doc(newer)),
        ]
    )
    page = await store.flagged_accounts(limit=2, offset=0, cases_listed=1)
    assert [(a.account_masked, a.cases) for a in page.accounts] == [
        ("****" + newer[1][-4:], 2),
        ("****" + older[1][-4:], 2),
    ]
    assert page.accounts[0].last_seen_at == at + timedelta(minutes=3)
    assert len(page.accounts[0].recent_cases) == 1
    everything = await store.flagged_accounts(limit=10_000, offset=0, cases_listed=1)
    assert page.total == everything.total == len(everything.accounts) >= 2
    assert "****" + once[1][-4:] not in {a.account_masked for a in everything.accounts}
    second = await store.flagged_accounts(limit=1, offset=1, cases_listed=1)
    assert second.accounts == page.accounts[1:]
    past = await store.flagged_accounts(limit=5, offset=everything.total, cases_listed=1)
    assert (past.accounts, past.total) == ((), everything.total)


async def test_the_links_of_cases_are_read_within_their_limit(store: Store) -> None:
    shared = fresh_account("PI05")
    cases = [opened_case(_now(), naming_doc(shared, fresh_account())) for _ in range(3)]
    await store.record_opened_cases(cases)
    ids = [c.case.id for c in cases]
    named = await store.accounts_named_in(ids, 100)
    assert len(named) == 6 and {n.case_id for n in named} == set(ids)
    assert len(await store.accounts_named_in(ids, 4)) == 4
    naming = await store.cases_naming([account_id(*shared)], 100)
    assert {n.case_id for n in naming} == set(ids)
    assert len(await store.cases_naming([account_id(*shared)], 2)) == 2
    assert await store.cases_naming([uuid4()], 10) == []


async def test_known_mules_are_due_first(store: Store) -> None:
    at = _now()
    mule = fresh_account("BK10")
    plain = opened_case(at, naming_doc(fresh_account("BK11")))
    named = [opened_case(at, naming_doc(mule)) for _ in range(2)]
    await store.record_opened_cases([plain, *named])
    ids = [plain.case.holds[0].id, *(_hold_on(c, mule) for c in named)]
    due = _ours(await store.due_holds(at, at, 10_000), *ids)
    assert set(due[:2]) == set(ids[1:]) and due[2:] == ids[:1]


async def test_a_hold_released_or_being_released_names_its_account_no_longer(
    store: Store,
) -> None:
    mule = fresh_account("BK12")
    cases = [opened_case(_now(), naming_doc(mule)) for _ in range(3)]
    await store.record_opened_cases(cases)
    holds = [_hold_on(c, mule) for c in cases]
    assert await store.mule_cases(holds) == {hold: 3 for hold in holds}
    await moved(store, holds[1], HoldEvent.REQUEST_CANCELLED)  # released at once
    await moved(store, holds[2], HoldEvent.RELEASE_ORDERED)  # its institution asked to lift it
    assert await store.mule_cases(holds) == {}
    found = await store.account_record(*mule, cases_listed=5)
    assert found is not None and found.cases == 1
    assert [n.case_id for n in await store.cases_naming([account_id(*mule)], 5)] == [
        cases[0].case.id
    ]


# Re-verification.


async def _stopped(store: Store, hold_id: UUID, at: datetime) -> None:
    confirmed = Confirmed(None, confirmed_at=at, stop_expires_at=at + timedelta(hours=40))
    await moved(store, hold_id, HoldEvent.REQUEST_SENT, HoldEvent.STOP_CONFIRMED, change=confirmed)


async def test_stopped_first_level_holds_are_paged_in_id_order_with_their_generation_s_key(
    store: Store,
) -> None:
    at = _now()
    cases = [await recorded(store, at) for _ in range(3)]
    holds = [h for c in cases for h in c.case.holds]
    on_bk01 = sorted(h.id for h in holds if h.institution_code == "BK01")
    for hold in holds:
        await _stopped(store, hold.id, at)
    reapplied = on_bk01[1]
    await moved(store, reapplied, HoldEvent.REAPPLIED)
    await moved(store, reapplied, HoldEvent.REQUEST_SENT, HoldEvent.STOP_CONFIRMED, amount=700)
    frozen = on_bk01[2]
    await moved(store, frozen, HoldEvent.FREEZE_CONFIRMED)
    page = await store.stopped_first_level_holds("BK01", None, 100_000)
    ours = [p for p in page if p.hold_id in on_bk01]
    assert [p.hold_id for p in ours] == [on_bk01[0], reapplied]
    assert [p.hold_id for p in page] == sorted(p.hold_id for p in page)
    assert {p.institution_code for p in page} == {"BK01"}
    first, again = ours
    assert first.idempotency_key == idempotency_key_for(first.hold_id, 0)
    assert again.idempotency_key == idempotency_key_for(reapplied, 1)
    asked = next(h for h in holds if h.id == on_bk01[0]).amount_asked
    assert (first.amount_first_request, first.amount_held) == (asked, asked)
    assert again.amount_held == 700
    after = await store.stopped_first_level_holds("BK01", ("BK01", on_bk01[0]), 100_000)
    assert on_bk01[0] not in {p.hold_id for p in after} and reapplied in {p.hold_id for p in after}
    assert len(await store.stopped_first_level_holds(None, None, 2)) == 2
    # Every institution's: by institution, then id; a cursor at one institution's last hold
    # goes on with the next institution's.
    all_of_them = await store.stopped_first_level_holds(None, None, 100_000)
    order = [(p.institution_code, p.hold_id) for p in all_of_them]
    assert order == sorted(order)
    assert {h.id for h in holds} - {p.hold_id for p in all_of_them} == {frozen}
    last_bk01 = max(o for o in order if o[0] == "BK01")
    following = await store.stopped_first_level_holds(None, last_bk01, 1)
    assert [(p.institution_code, p.hold_id) for p in following] == order[
        order.index(last_bk01) + 1 : order.index(last_bk01) + 2
    ]


async def _finish_running(store: Store) -> None:
    """Leave no job running (the PostgreSQL database is the module's: the next test's starts
    would find it)."""
    now = _now()
    while (job := await store.claim_reverification("cleaner", now, now)) is not None:
        assert await store.save_reverification(
            job.id, "cleaner", job.progress, now, now, finished=True
        )


async def test_a_reverification_starts_unless_a_running_one_overlaps_and_one_worker_runs_it(
    store: Store,
) -> None:
    await _finish_running(store)
    at = _now()
    case = await recorded(store, at)
    for hold in case.case.holds:
        await _stopped(store, hold.id, at)
    bk01 = await store.start_reverification(uuid4(), "BK01", "operator:ana", at)
    assert bk01.started and bk01.job.holds >= 1 and bk01.job.state is JobState.RUNNING
    pi04 = await store.start_reverification(uuid4(), "PI04", "operator:ana", at)
    assert pi04.started
    for scope in ("BK01", None):
        refused = await store.start_reverification(uuid4(), scope, "operator:bo", at)
        assert (refused.started, refused.job.id) == (False, bk01.job.id)
    assert await store.reverification(bk01.job.id) == bk01.job
    assert await store.reverification(uuid4()) is None
    listed = await store.reverifications(100)
    assert {bk01.job.id, pi04.job.id} <= {j.id for j in listed}
    assert [j.started_at for j in listed] == sorted((j.started_at for j in listed), reverse=True)

    lease = at + timedelta(minutes=1)
    claimed = await store.claim_reverification("w1", at, lease)
    assert claimed is not None and claimed.id == bk01.job.id  # the oldest first
    other = await store.claim_reverification("w2", at, lease)
    assert other is not None and other.id == pi04.job.id  # w1 holds the first
    assert await store.claim_reverification("w3", at, lease) is None
    first = case.case.holds[0]
    progress = ReverifyProgress(
        (first.institution_code, first.id), {"confirmed": 3, "unreachable": 1}
    )
    assert not await store.save_reverification(
        bk01.job.id, "w2", progress, at, lease, finished=False
    )
    assert await store.save_reverification(bk01.job.id, "w1", progress, at, lease, finished=False)
    saved = await store.reverification(bk01.job.id)
    assert saved is not None and saved.progress == progress
    assert (saved.progress.asked, saved.remaining) == (3, max(0, bk01.job.holds - 4))
    # Once w1's lease lapsed, another worker resumes the job where it was saved.
    taken = await store.claim_reverification("w3", lease, lease + timedelta(minutes=1))
    assert taken is not None and taken.id == bk01.job.id and taken.progress == progress
    assert not await store.save_reverification(
        bk01.job.id, "w1", progress, at, lease, finished=True
    )
    done_at = lease + timedelta(seconds=5)
    assert await store.save_reverification(
        bk01.job.id, "w3", progress, done_at, done_at, finished=True
    )
    finished = await store.reverification(bk01.job.id)
    assert finished is not None and finished.state is JobState.FINISHED
    assert (finished.finished_at, finished.remaining) == (done_at, 0)
    assert (await store.start_reverification(uuid4(), "BK01", "operator:bo", at)).started
    assert await store.save_reverification(pi04.job.id, "w2", progress, at, at, finished=True)
    await _finish_running(store)


async def test_two_asking_at_once_start_one_job(store: Store) -> None:
    await _finish_running(store)
    at = _now()
    begun = await asyncio.gather(
        *(store.start_reverification(uuid4(), None, f"operator:{n}", at) for n in range(4))
    )
    assert sum(b.started for b in begun) == 1
    assert len({b.job.id for b in begun}) == 1
    await _finish_running(store)
