"""`SqlStore` on the real PostgreSQL: one case per report under racing writers, and an audit
trail that cannot be changed."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from stopper.adapters.db.engine import create_engine
from stopper.adapters.db.models import (
    AccountRow,
    HoldRow,
    HoldTransitionRow,
    TransferRow,
    VictimRow,
)
from stopper.adapters.db.store import SqlStore
from stopper.app.dispatch import Dispatcher
from stopper.app.gateway import InstitutionGateway
from stopper.app.hold_changes import AttemptClaimed
from stopper.app.intake import parse_report, to_opened_case
from stopper.app.ports import HoldRecord, HoldUpdate, OpenedCase, OutboxMessage
from stopper.app.returns import ReturnDesk
from stopper.config import DatabaseSettings, DispatchSettings
from stopper.domain.holds import HoldEvent
from stopper.domain.messages import OnwardKind, OnwardTransfer
from stopper.domain.trail import TRAIL_ACTOR
from stopper.registry import load_registry
from tests.factories import report_doc, stop_and_follow
from tests.unit.fakes import FixedClock, ScriptedAdapter

pytestmark = pytest.mark.integration


@pytest.fixture
async def store(migrated_postgres: str) -> AsyncIterator[SqlStore]:
    engine = create_engine(DatabaseSettings(url=migrated_postgres))
    yield SqlStore(engine, "stop-requests")
    await engine.dispose()


def opened_case() -> OpenedCase:
    report = parse_report(json.dumps(report_doc()).encode(), load_registry())
    now = datetime.now(UTC)
    return to_opened_case(report, accepted_at=now, opened_at=now, source="http")


async def test_two_racing_writers_record_one_case(store: SqlStore) -> None:
    case = opened_case()
    outcomes = await asyncio.gather(*[store.record_opened_cases([case]) for _ in range(4)])
    assert sorted(len(o.created) for o in outcomes) == [0, 0, 0, 1]
    assert all(
        o.already_known == {case.case.id: case.fingerprint} for o in outcomes if not o.created
    )
    async with store.engine.connect() as connection:
        holds = (
            await connection.execute(select(HoldRow.id).where(HoldRow.case_id == case.case.id))
        ).all()
        births = (
            await connection.execute(
                select(HoldTransitionRow.id).where(
                    HoldTransitionRow.hold_id.in_([h.id for h in holds])
                )
            )
        ).all()
    assert len(holds) == 2 and len(births) == 2


async def test_case_view_masks_accounts_and_shows_states(store: SqlStore) -> None:
    case = opened_case()
    await store.record_opened_cases([case])
    view = await store.get_case(case.case.id)
    assert view is not None
    assert (view.victim_count, view.transfer_count) == (2, 3)
    assert [
        (h.institution_code, h.account_masked, h.state, h.amount_asked) for h in view.holds
    ] in (
        [("BK01", "****3333", "requested", 2_000_050), ("PI04", "****5678", "requested", 82_000)],
        [("PI04", "****5678", "requested", 82_000), ("BK01", "****3333", "requested", 2_000_050)],
    )


async def test_the_gauges_counts_are_the_overviews(store: SqlStore) -> None:
    before, _ = await store.gauge_counts()
    await store.record_opened_cases([opened_case()])
    by_state, outbox_pending = await store.gauge_counts()
    assert by_state.get("requested", 0) == before.get("requested", 0) + 2
    overview = await store.overview()
    assert (by_state, outbox_pending) == (overview.holds_by_state, overview.outbox_pending)


async def test_a_batch_records_its_new_cases_whole_and_leaves_a_known_one_alone(
    store: SqlStore,
) -> None:
    """One statement for the batch: the cases that are new get every row (the two accounts all
    three name are there once, as first written), a case already there gets nothing more."""
    known, first, second = opened_case(), opened_case(), opened_case()
    await store.record_opened_cases([known])

    async def accounts() -> dict[UUID, datetime]:
        async with store.engine.connect() as connection:
            rows = await connection.execute(
                select(AccountRow.id, AccountRow.first_seen_at)
                .join(HoldRow, HoldRow.account_id == AccountRow.id)
                .where(HoldRow.case_id.in_([c.case.id for c in (known, first, second)]))
                .distinct()
            )
            return {row.id: row.first_seen_at for row in rows}

    before = await accounts()
    outcome = await store.record_opened_cases([known, first, second])
    assert sorted(outcome.created) == sorted([first.case.id, second.case.id])
    assert outcome.already_known == {known.case.id: known.fingerprint}
    async with store.engine.connect() as connection:
        counts = {}
        for model in (HoldRow, TransferRow, VictimRow):
            rows = await connection.execute(
                select(model.case_id, func.count()).group_by(model.case_id)
            )
            counts[model.__tablename__] = dict(rows.tuples().all())
        births = await connection.scalar(
            select(func.count())
            .select_from(HoldTransitionRow)
            .join(HoldRow, HoldRow.id == HoldTransitionRow.hold_id)
            .where(HoldRow.case_id.in_([c.case.id for c in (known, first, second)]))
        )
    cases = (known.case.id, first.case.id, second.case.id)
    assert [counts["holds"][c] for c in cases] == [2, 2, 2]
    assert [counts["transfers"][c] for c in cases] == [3, 3, 3]
    assert [counts["victims"][c] for c in cases] == [2, 2, 2]
    assert births == 6
    # Named again by the batch, the two accounts are not written again.
    assert len(before) == 2 and await accounts() == before


async def test_intake_claims_the_first_attempts_with_the_case_and_only_once(
    store: SqlStore,
) -> None:
    """The dispatcher's claim, decided as the holds are born: they are committed `sent`, with
    the attempt's bookkeeping and both transitions; a redelivery claims nothing, and the
    dispatcher's own claim finds nothing owed (no request is sent twice)."""
    clock = FixedClock()
    rng = random.Random(1)
    dispatcher = Dispatcher(
        store,
        InstitutionGateway(ScriptedAdapter({}), load_registry(), hedge=True, rng=rng),
        clock,
        DispatchSettings().policy(),
        rng,
    )
    case = opened_case()
    first, again = [await store.record_opened_cases([case], dispatcher.claim_new) for _ in range(2)]
    assert {record.hold.id for record, _ in first.claimed} == {h.id for h in case.case.holds}
    assert again.created == [] and not again.claimed
    async with store.engine.connect() as connection:
        holds = (
            await connection.execute(select(HoldRow).where(HoldRow.case_id == case.case.id))
        ).all()
        rows = {h.id: h for h in holds}
        transitions = (
            await connection.execute(
                select(HoldTransitionRow.hold_id, HoldTransitionRow.to_state)
                .where(HoldTransitionRow.hold_id.in_(list(rows)))
                .order_by(HoldTransitionRow.id)
            )
        ).all()
    assert {(h.state, h.attempts, h.sent_at) for h in rows.values()} == {("sent", 1, clock.now())}
    assert all(h.next_attempt_at is not None and h.dispatch_deadline_at for h in rows.values())
    for hold_id in rows:
        assert [t.to_state for t in transitions if t.hold_id == hold_id] == ["requested", "sent"]
        assert await dispatcher.claim(hold_id, first=True) is None


async def test_leases_are_renewed_only_for_the_attempt_given_and_never_shortened(
    store: SqlStore,
) -> None:
    clock = FixedClock()
    rng = random.Random(1)
    dispatcher = Dispatcher(
        store,
        InstitutionGateway(ScriptedAdapter({}), load_registry(), hedge=True, rng=rng),
        clock,
        DispatchSettings().policy(),
        rng,
    )
    outcome = await store.record_opened_cases([opened_case(), opened_case()], dispatcher.claim_new)
    ids = [record.hold.id for record, _ in outcome.claimed]
    assert len(ids) >= 3
    mine, someone_elses, locked = ids[0], ids[1], ids[2]
    later = clock.now() + timedelta(seconds=30)
    async with store.engine.connect() as blocker:
        # Another transaction is writing this hold's outcome: it is skipped, not waited for.
        await blocker.execute(select(HoldRow.id).where(HoldRow.id == locked).with_for_update())
        renewed = await asyncio.wait_for(
            store.renew_leases({mine: 1, someone_elses: 2, locked: 1}, later), timeout=5
        )
        await blocker.rollback()
    assert renewed == [mine]
    # A lease already longer than asked is left alone.
    assert await store.renew_leases({mine: 1}, later - timedelta(seconds=10)) == []
    async with store.engine.connect() as connection:
        rows = await connection.execute(
            select(HoldRow.id, HoldRow.next_attempt_at).where(HoldRow.id.in_(ids))
        )
        leases = {row.id: row.next_attempt_at for row in rows}
    assert leases[mine] == later
    assert leases[someone_elses] is not None and leases[someone_elses] < later
    assert leases[locked] is not None and leases[locked] < later


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE hold_transitions SET cause = 'rewritten' WHERE hold_id = :hold",
        "DELETE FROM hold_transitions WHERE hold_id = :hold",
    ],
)
async def test_audit_trail_is_append_only(store: SqlStore, statement: str) -> None:
    case = opened_case()
    await store.record_opened_cases([case])
    hold_id = case.case.holds[0].id
    with pytest.raises(DBAPIError, match="append-only"):
        async with store.engine.begin() as connection:
            await connection.execute(text(statement), {"hold": hold_id})
    async with store.engine.connect() as connection:
        rows = (
            await connection.execute(
                select(HoldTransitionRow.cause).where(HoldTransitionRow.hold_id == hold_id)
            )
        ).all()
    assert [r.cause for r in rows] == ["report received"]


async def test_racing_return_orders_allocate_the_frozen_money_once(store: SqlStore) -> None:
    case = opened_case()
    await store.record_opened_cases([case])
    now = datetime.now(UTC)

    def freeze_all(record: HoldRecord) -> HoldUpdate:
        hold = record.hold
        moves = [
            hold.apply(event, cause="test", actor="test", at=now, amount=amount)
            for event, amount in (
                (HoldEvent.REQUEST_SENT, None),
                (HoldEvent.STOP_CONFIRMED, hold.amount_asked),
                (HoldEvent.FREEZE_CONFIRMED, hold.amount_asked),
            )
        ]
        return HoldUpdate(at=now, transitions=moves)

    for hold in case.case.holds:
        await store.update_hold(hold.id, freeze_all)
    adapter = ScriptedAdapter({})
    desk = ReturnDesk(
        store, InstitutionGateway(adapter, load_registry(), hedge=True), FixedClock(now)
    )
    results = await asyncio.gather(
        *[
            desk.order(case.case.id, document_ref=f"RET-{i}", actor="operator:test")
            for i in range(4)
        ]
    )
    await desk.wait_idle()

    assert sorted(len(r.started) for r in results if r is not None) == [0, 0, 0, 2]
    view = await store.get_case(case.case.id)
    assert view is not None
    assert {h.state for h in view.holds} == {"returned"}
    lost: dict[str, int] = {}
    for transfer in report_doc()["transfers"]:
        cents = round(Decimal(transfer["amount"]) * 100)
        lost[transfer["victim_id"]] = lost.get(transfer["victim_id"], 0) + cents
    paid: dict[str, int] = {}
    for payout in view.payouts:
        assert payout.status == "paid" and payout.round == 1
        paid[payout.victim_ref] = paid.get(payout.victim_ref, 0) + payout.amount
    assert paid == lost  # everything frozen came from these victims, and went back once
    assert len(adapter.returns) == 2


async def test_racing_batches_and_single_writers_lose_no_change(store: SqlStore) -> None:
    """Batches lock their holds (in id order, so two batches never deadlock) and write without
    a version check: a batch, the same batch reversed, and one-hold writers racing on the same
    holds must each count once."""
    holds = []
    for _ in range(10):
        case = opened_case()
        await store.record_opened_cases([case])
        holds += [h.id for h in case.case.holds]
    now = datetime.now(UTC)

    def one_more(record: HoldRecord) -> HoldUpdate:
        return HoldUpdate(at=now, change=AttemptClaimed(record.attempts + 1, now, now, now))

    await asyncio.gather(
        *[store.update_holds({h: one_more for h in holds}) for _ in range(3)],
        *[store.update_holds({h: one_more for h in reversed(holds)}) for _ in range(3)],
        *[store.update_hold(h, one_more) for h in holds],
    )
    async with store.engine.connect() as connection:
        rows = await connection.execute(
            select(HoldRow.attempts, HoldRow.version).where(HoldRow.id.in_(holds))
        )
        assert {(r.attempts, r.version) for r in rows} == {(7, 8)}


async def test_a_trail_merge_is_in_the_audit_with_its_raise_and_version(store: SqlStore) -> None:
    """Money moving on from one first-level account to the other: the other hold asks for
    more, through its `merged` event, written with the answer that found it."""
    case = opened_case()
    await store.record_opened_cases([case])
    [mule] = [h for h in case.case.holds if h.institution_code == "BK01"]
    [other] = [h for h in case.case.holds if h.institution_code == "PI04"]
    now = datetime.now(UTC)
    onward = [
        OnwardTransfer(
            OnwardKind.TRANSFER, 30_000, now, other.institution_code, other.account_number
        )
    ]

    await store.update_hold(mule.id, stop_and_follow(onward, 30_000, now))
    async with store.engine.connect() as connection:
        row = (
            await connection.execute(
                select(HoldRow.amount_asked, HoldRow.version, HoldRow.state).where(
                    HoldRow.id == other.id
                )
            )
        ).one()
        audit = (
            await connection.execute(
                select(
                    HoldTransitionRow.from_state,
                    HoldTransitionRow.to_state,
                    HoldTransitionRow.event,
                    HoldTransitionRow.actor,
                )
                .where(HoldTransitionRow.hold_id == other.id)
                .order_by(HoldTransitionRow.id)
            )
        ).all()
    assert (row.amount_asked, row.version, row.state) == (
        other.amount_asked + 30_000,
        2,
        "requested",
    )
    assert [tuple(a) for a in audit] == [
        (None, "requested", None, "stopper:intake"),
        ("requested", "requested", "merged", TRAIL_ACTOR),
    ]


async def test_one_relay_at_a_time_publishes_so_records_leave_in_the_order_written(
    store: SqlStore,
) -> None:
    # Two relays taking batches side by side (SKIP LOCKED) could publish the newer batch
    # first: a case's events out of order for its agency. The second relay waits its turn.
    await store.record_opened_cases([opened_case()])
    entered, release = asyncio.Event(), asyncio.Event()
    first_batch: list[int] = []

    async def slow(messages: Sequence[OutboxMessage]) -> None:
        first_batch.extend(m.id for m in messages)
        entered.set()
        await release.wait()

    first = asyncio.create_task(store.relay_outbox(slow, 1))
    await asyncio.wait_for(entered.wait(), 10)
    meanwhile: list[int] = []

    async def fast(messages: Sequence[OutboxMessage]) -> None:
        meanwhile.extend(m.id for m in messages)

    assert await store.relay_outbox(fast, 10) == 0
    assert meanwhile == []
    release.set()
    assert await first == 1
    assert await store.relay_outbox(fast, 10) >= 1
    assert min(meanwhile) > first_batch[0]
