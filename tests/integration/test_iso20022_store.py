"""The store's side of the ISO 20022 adapter (`MessageStore`), on SQLite and PostgreSQL: the
payments each stop request names (victims' transfers, onward transfers the trail followed) and
the record of which holds each message carried."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from uuid import uuid4

import pytest

from stopper.adapters.db import migrate
from stopper.adapters.db.engine import create_engine
from stopper.adapters.db.store import SqlStore
from stopper.app.message_ports import SentMessage
from stopper.config import DatabaseSettings
from stopper.domain.accounts import AccountRef
from stopper.domain.cases import hold_id_for
from stopper.domain.holds import idempotency_key_for
from stopper.domain.messages import OnwardKind, OnwardTransfer
from tests.factories import stop_and_follow
from tests.integration.test_store_contract import STOP_REQUESTS, _now, opened_case
from tests.servers import create_database, drop_database

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def databases() -> AsyncIterator[list[str]]:
    """This module's PostgreSQL database, made when a test first asks for it."""
    made: list[str] = []
    yield made
    for url in made:
        await drop_database(url)


@pytest.fixture(params=["sqlite", "postgres"])
async def store(
    request: pytest.FixtureRequest, databases: list[str], tmp_path: Path
) -> AsyncIterator[SqlStore]:
    if request.param == "sqlite":
        engine = create_engine(DatabaseSettings(embedded_path=tmp_path / "iso.db"))
        await migrate.upgrade(engine)
    else:
        if not databases:
            databases.append(
                await create_database(request.getfixturevalue("postgres_url"), "iso_store")
            )
            engine = create_engine(DatabaseSettings(url=databases[0]))
            await migrate.upgrade(engine)
            await engine.dispose()
        engine = create_engine(DatabaseSettings(url=databases[0]))
    try:
        yield SqlStore(engine, STOP_REQUESTS)
    finally:
        await engine.dispose()


async def test_a_first_level_hold_names_the_victims_transfers_into_its_account(
    store: SqlStore,
) -> None:
    case = opened_case()
    await store.record_opened_cases([case])
    [mule] = [h for h in case.case.holds if h.institution_code == "BK01"]
    [other] = [h for h in case.case.holds if h.institution_code == "PI04"]
    grounds = await store.stop_grounds([mule.id, other.id, uuid4()])
    assert set(grounds) == {mule.id, other.id}
    assert {g.agency_code for g in grounds.values()} == {"PSB-TEST"}
    payments = [(g.hold_id, p) for g in grounds.values() for p in g.payments]
    assert sorted(
        (h == mule.id, p.amount, p.debtor_institution, p.reference) for h, p in payments
    ) == [
        (False, 82_000, "BK03", None),
        (True, 500_050, "BK03", None),
        (True, 1_500_000, "BK02", "fake investment platform"),
    ]
    first = next(p for _, p in payments if p.amount == 1_500_000)
    assert (first.debtor_account, first.creditor_institution, first.creditor_account) == (
        "6222000000000001",
        "BK01",
        "6222111122223333",
    )
    assert first.currency == "CNY" and first.settled_at.tzinfo is not None
    settled = [p.settled_at for p in grounds[mule.id].payments]
    assert settled == sorted(settled)
    assert await store.stop_grounds([uuid4()]) == {}
    assert await store.stop_grounds([]) == {}


async def test_a_trail_hold_names_the_onward_transfer_that_reached_it(store: SqlStore) -> None:
    case = opened_case()
    await store.record_opened_cases([case])
    [mule] = [h for h in case.case.holds if h.institution_code == "BK01"]
    [other] = [h for h in case.case.holds if h.institution_code == "PI04"]
    at = _now()
    onward_to = f"6222{uuid4().int % 10**12:012d}"
    onward = [
        OnwardTransfer(
            OnwardKind.TRANSFER, 30_000, at - timedelta(minutes=5), "PI04", other.account_number
        ),
        OnwardTransfer(OnwardKind.TRANSFER, 20_000, at - timedelta(minutes=4), "BK03", onward_to),
        OnwardTransfer(OnwardKind.CASH_WITHDRAWAL, 10_000, at - timedelta(minutes=3)),
    ]

    await store.update_hold(mule.id, stop_and_follow(onward, 60_000, at))
    trail_hold = hold_id_for(case.case.id, AccountRef("BK03", onward_to))
    assert await store.get_hold(trail_hold) is not None
    grounds = await store.stop_grounds([trail_hold, other.id])
    [reached] = grounds[trail_hold].payments
    assert (reached.amount, reached.reference, reached.currency) == (20_000, None, "CNY")
    assert (reached.debtor_institution, reached.debtor_account) == ("BK01", mule.account_number)
    assert (reached.creditor_institution, reached.creditor_account) == ("BK03", onward_to)
    # The merged account names its victim's transfer and the onward one that joined it.
    assert sorted(p.amount for p in grounds[other.id].payments) == [30_000, 82_000]


async def test_messages_recorded_together_each_lead_to_the_holds_they_carried(
    store: SqlStore,
) -> None:
    case = opened_case()
    await store.record_opened_cases([case])
    holds = [h.id for h in case.case.holds]
    message_id = f"STP{uuid4().hex}"
    keys = [(h, idempotency_key_for(h)) for h in holds]
    other = f"STP{uuid4().hex}"
    grounds = await store.record_messages(
        [
            SentMessage(message_id, "camt.056.001.08", "BK01", _now(), [*keys[:2], keys[0]]),
            SentMessage(other, "camt.056.001.08", "PI04", _now(), keys[2:]),
        ]
    )
    assert sorted(await store.holds_of_message(message_id)) == sorted(keys[:2])
    assert sorted(await store.holds_of_message(other)) == sorted(keys[2:])
    assert set(grounds) == set(holds), "the grounds of every hold the messages carry"
    assert all(g.payments for g in grounds.values())
    assert await store.holds_of_message("STPunknown") == []
