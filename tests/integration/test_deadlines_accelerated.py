"""Thousands of stops through 72 simulated hours on the real PostgreSQL: most are never
frozen, some are frozen when warned, some are re-applied by an operator. Every lapse is
recorded, every lapse comes after its warnings, and no stop is re-applied more than twice."""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from stopper.adapters.clock import ManualClock
from stopper.adapters.db.engine import create_engine
from stopper.adapters.db.models import HoldRow, HoldTransitionRow, OutboxRow
from stopper.adapters.db.store import SqlStore
from stopper.app.deadlines import DeadlineKeeper, ReapplyOutcome
from stopper.app.freezes import FreezeDesk
from stopper.app.gateway import InstitutionGateway
from stopper.app.hold_changes import Confirmed
from stopper.app.intake import parse_report, to_opened_case
from stopper.app.jurisdictions import PROFILES, Jurisdiction
from stopper.app.ports import HoldRecord, HoldUpdate
from stopper.config import DatabaseSettings, DeadlineSettings
from stopper.domain.holds import HoldEvent
from stopper.domain.messages import (
    OrderAnswer,
    OrderFreeze,
    OrderRelease,
    OrderReturn,
    RequestStop,
)
from stopper.registry import Institution, load_registry
from tests.factories import report_doc

pytestmark = pytest.mark.integration

HOLDS_PER_REPORT = 500


class FreezesAtOnce:
    """A bank that confirms every freeze of what its stop holds."""

    async def request_stop(self, institution: Institution, request: RequestStop) -> Any:
        raise AssertionError("no stop requests in this test")

    async def request_freeze(self, institution: Institution, request: OrderFreeze) -> OrderAnswer:
        return OrderAnswer(True, request.amount)

    async def request_return(self, institution: Institution, request: OrderReturn) -> Any:
        raise AssertionError("no returns in this test")

    async def request_release(self, institution: Institution, request: OrderRelease) -> Any:
        raise AssertionError("no releases in this test")

    async def stop_status(self, institution: Institution, idempotency_key: str) -> Any:
        raise AssertionError("no status inquiries in this test")

    async def stop_statuses(self, institution: Institution, idempotency_keys: Any) -> Any:
        raise AssertionError("no reconciliation in this test")


REPORTS = 4
STEP = timedelta(minutes=10)


@pytest.fixture
async def store(migrated_postgres: str) -> AsyncIterator[SqlStore]:
    engine = create_engine(DatabaseSettings(url=migrated_postgres))
    yield SqlStore(engine, f"stops-{uuid.uuid4().hex[:8]}")
    await engine.dispose()


def big_report(reported_at: datetime) -> bytes:
    doc = report_doc(reported_at=reported_at.isoformat())
    template = doc["transfers"][0]
    doc["victims"] = [{"victim_id": "V1"}]
    doc["transfers"] = [
        dict(
            template,
            victim_id="V1",
            transferred_at=(reported_at - timedelta(hours=1)).isoformat(),
            receiving_account={
                "institution_code": "BK0" + str(1 + n % 9),
                "account_number": f"62{uuid.uuid4().int % 10**15:015d}",
            },
        )
        for n in range(HOLDS_PER_REPORT)
    ]
    return json.dumps(doc).encode()


def confirm(at: datetime, expires_at: datetime | None = None) -> Any:
    """Confirm the stop at `at`, lapsing at `expires_at` (default: 48 hours later, cn)."""
    lapses_at = expires_at or at + timedelta(hours=48)

    def decide(record: HoldRecord) -> HoldUpdate:
        hold = record.hold
        transitions = [hold.apply(HoldEvent.REQUEST_SENT, cause="test", actor="test", at=at)]
        transitions.append(
            hold.apply(
                HoldEvent.STOP_CONFIRMED,
                cause="test",
                actor="institution:test",
                at=at,
                amount=hold.amount_asked,
            )
        )
        return HoldUpdate(
            at=at,
            transitions=transitions,
            change=Confirmed(None, confirmed_at=at, stop_expires_at=lapses_at),
        )

    return decide


async def test_72_hours_of_deadlines(store: SqlStore) -> None:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    clock = ManualClock(start)
    registry = load_registry()
    hold_ids: list[uuid.UUID] = []
    for _ in range(REPORTS):
        opened = to_opened_case(
            parse_report(big_report(start), registry),
            accepted_at=start,
            opened_at=start,
            source="kafka",
        )
        await store.record_opened_cases([opened])
        hold_ids += [h.id for h in opened.case.holds]
    assert len(hold_ids) == REPORTS * HOLDS_PER_REPORT
    # Stops confirmed between 46 and 26 hours before the window: the first lapses come early.
    for index, hold_id in enumerate(hold_ids):
        confirmed = start - timedelta(hours=46) + timedelta(minutes=index % 1200)
        await store.update_hold(hold_id, confirm(confirmed))

    events_topic = f"events-{uuid.uuid4().hex[:8]}"
    keeper = DeadlineKeeper(
        store,
        registry,
        clock,
        DeadlineSettings().policy(),
        events_topic=events_topic,
        stop_requests_topic="stops",
    )
    # An operator re-applies these as soon as they are warned about, or once they lapsed, and
    # the bank confirms each new stop at once; every other stop is left to lapse.
    renewed = hold_ids[::7]
    # Another operator orders the formal freeze of these when warned; the bank confirms at once.
    frozen = [h for h in hold_ids[3::11] if h not in set(renewed)]
    freezes = FreezeDesk(
        store,
        InstitutionGateway(FreezesAtOnce(), registry, hedge=True),
        clock,
        DeadlineSettings().policy(),
    )
    refused: set[uuid.UUID] = set()
    while clock.now() < start + timedelta(hours=72):
        clock.advance(STEP)
        await keeper.sweep_once()
        async with store.engine.connect() as connection:
            due = (
                (
                    await connection.execute(
                        select(HoldRow.id).where(
                            HoldRow.id.in_(renewed),
                            HoldRow.id.not_in(refused),
                            ((HoldRow.state == "stopped") & (HoldRow.warnings_sent > 0))
                            | (HoldRow.state == "expired"),
                        )
                    )
                )
                .scalars()
                .all()
            )
        async with store.engine.connect() as connection:
            warned = (
                (
                    await connection.execute(
                        select(HoldRow.id).where(
                            HoldRow.id.in_(frozen),
                            HoldRow.state == "stopped",
                            HoldRow.warnings_sent > 0,
                            HoldRow.freeze_document_ref.is_(None),
                        )
                    )
                )
                .scalars()
                .all()
            )
        for hold_id in warned:
            await freezes.order(hold_id, document_ref="FRZ-TEST", actor="operator:test")
        await freezes.wait_idle()
        for hold_id in due:
            outcome = await keeper.reapply(hold_id, actor="operator:test", reason="renew")
            if outcome is ReapplyOutcome.NOT_ALLOWED:
                refused.add(hold_id)
            else:
                await store.update_hold(hold_id, confirm(clock.now()))
    # However often it is asked, a stop is re-applied at most twice.
    for hold_id in renewed:
        record = await store.get_hold(hold_id)
        assert record is not None
        if record.hold.reapplications == 2:
            outcome = await keeper.reapply(hold_id, actor="operator:test", reason="again")
            assert outcome is ReapplyOutcome.NOT_ALLOWED

    async with store.engine.connect() as connection:
        holds = {
            row.id: row
            for row in await connection.execute(
                select(HoldRow.id, HoldRow.state, HoldRow.reapplications).where(
                    HoldRow.id.in_(hold_ids)
                )
            )
        }
        lapses = (
            await connection.execute(
                select(
                    HoldTransitionRow.hold_id, HoldTransitionRow.at, HoldTransitionRow.cause
                ).where(
                    HoldTransitionRow.hold_id.in_(hold_ids), HoldTransitionRow.to_state == "expired"
                )
            )
        ).all()
        events = (
            await connection.execute(
                select(OutboxRow.key, OutboxRow.payload)
                .where(OutboxRow.topic == events_topic)
                .order_by(OutboxRow.id)
            )
        ).all()

    # Frozen in time: no lapse. Every stop left alone lapsed, recorded in the audit trail.
    assert all(holds[h].state == "frozen" for h in frozen)
    lapsed_holds = {row.hold_id for row in lapses}
    assert lapsed_holds == set(hold_ids) - set(renewed) - set(frozen)
    assert all(holds[h].state == "expired" for h in lapsed_holds)
    # No re-stop beyond two.
    assert max(row.reapplications for row in holds.values()) == 2
    assert all(holds[h].reapplications == 2 for h in refused)
    # Every lapse came after its two warnings, in order, and none was silent.
    # The database is shared with other tests: their stops lapse in this sweep too.
    ours = {str(h) for h in hold_ids}
    by_hold: dict[str, list[tuple[str, Any]]] = defaultdict(list)
    for key, payload in events:
        if key in ours:
            by_hold[key].append((payload["event"], payload.get("warning")))
    for hold_id in hold_ids:
        sequence = by_hold[str(hold_id)]
        generations = sum(1 for event, _ in sequence if event == "stop_lapsed")
        assert (
            sequence[: 3 * generations]
            == [
                ("stop_expiring", "12h"),
                ("stop_expiring", "2h"),
                ("stop_lapsed", None),
            ]
            * generations
        )
    assert len(lapses) == sum(
        1 for seq in by_hold.values() for event, _ in seq if event == "stop_lapsed"
    )
    assert not [row for row in lapses if "had not gone out" in row.cause]


async def test_a_uk_stop_before_a_bank_holiday_weekend_lapses_on_the_fourth_business_day(
    store: SqlStore,
) -> None:
    """The uk profile on the real store: stops confirmed on the Friday before the late-summer
    bank holiday are warned 24 h and 2 h ahead of the end of Friday 4 September (London), lapse
    then and not before, and may not be re-applied."""
    profile = PROFILES[Jurisdiction.UK]
    confirmed = datetime(2026, 8, 28, 14, tzinfo=UTC)  # Friday, 15:00 in London
    expires = datetime(2026, 9, 4, 23, tzinfo=UTC)  # midnight in London, summer time
    assert profile.stop_expiry.expires_at(confirmed) == expires
    registry = load_registry()
    opened = to_opened_case(
        parse_report(big_report(confirmed), registry),
        accepted_at=confirmed,
        opened_at=confirmed,
        source="kafka",
    )
    await store.record_opened_cases([opened])
    hold_ids = [h.id for h in opened.case.holds][:50]
    for hold_id in hold_ids:
        await store.update_hold(
            hold_id, confirm(confirmed, profile.stop_expiry.expires_at(confirmed))
        )
    clock = ManualClock(confirmed)
    events_topic = f"events-{uuid.uuid4().hex[:8]}"
    keeper = DeadlineKeeper(
        store,
        registry,
        clock,
        DeadlineSettings().policy(profile),
        events_topic=events_topic,
        stop_requests_topic="stops",
    )
    step = timedelta(minutes=30)
    seen: list[tuple[datetime, str, Any]] = []
    while clock.now() < expires + timedelta(hours=2):
        clock.advance(step)
        await keeper.sweep_once()
        async with store.engine.connect() as connection:
            for key, payload in await connection.execute(
                select(OutboxRow.key, OutboxRow.payload)
                .where(OutboxRow.topic == events_topic)
                .order_by(OutboxRow.id)
                .offset(len(seen))
            ):
                seen.append((clock.now(), payload["event"], payload.get("warning")))
                assert key in {str(h) for h in hold_ids}
    firsts = {(event, warning): at for at, event, warning in reversed(seen)}
    assert expires - timedelta(hours=24) <= firsts[("stop_expiring", "24h")]
    assert firsts[("stop_expiring", "24h")] < expires - timedelta(hours=24) + step
    assert expires - timedelta(hours=2) <= firsts[("stop_expiring", "2h")] < expires
    assert expires <= firsts[("stop_lapsed", None)] < expires + step
    assert len(seen) == 3 * len(hold_ids)
    for hold_id in hold_ids:
        record = await store.get_hold(hold_id)
        assert record is not None and record.hold.state.value == "expired"
        outcome = await keeper.reapply(hold_id, actor="operator:test", reason="again")
        assert outcome is ReapplyOutcome.NOT_ALLOWED
