"""Every database session has a statement timeout: a statement that runs (or waits) longer
fails as `StoreUnavailable`, retried by its caller, instead of holding it without end."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from stopper.adapters.db import migrate
from stopper.adapters.db.engine import create_engine
from stopper.adapters.db.errors import store_errors
from stopper.adapters.db.models import HoldRow
from stopper.adapters.db.store import SqlStore
from stopper.app.hold_changes import WarningsSent
from stopper.app.intake import parse_report, to_opened_case
from stopper.app.ports import HoldRecord, HoldUpdate
from stopper.config import DatabaseSettings
from stopper.errors import StoreUnavailable
from stopper.registry import load_registry
from tests.factories import report_doc

pytestmark = pytest.mark.integration

TIMEOUT_S = 0.3


async def a_hold(store: SqlStore) -> UUID:
    now = datetime.now(UTC)
    report = parse_report(json.dumps(report_doc()).encode(), load_registry())
    case = to_opened_case(report, accepted_at=now, opened_at=now, source="http")
    await store.record_opened_cases([case])
    return case.case.holds[0].id


def one_warning(record: HoldRecord) -> HoldUpdate:
    return HoldUpdate(at=datetime.now(UTC), change=WarningsSent(1))


@pytest.fixture
async def postgres_engine(migrated_postgres: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(DatabaseSettings(url=migrated_postgres, statement_timeout_s=TIMEOUT_S))
    yield engine
    await engine.dispose()


async def test_postgres_cancels_a_slow_statement_as_the_store_unavailable(
    postgres_engine: AsyncEngine,
) -> None:
    async with postgres_engine.connect() as connection:
        assert await connection.scalar(text("SHOW statement_timeout")) == "300ms"
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="timed out"), store_errors():
        async with postgres_engine.connect() as connection:
            await connection.execute(text("SELECT pg_sleep(10)"))
    assert time.monotonic() - started < 5


async def test_a_write_waiting_on_a_lock_past_the_timeout_fails_and_changes_nothing(
    postgres_engine: AsyncEngine, migrated_postgres: str
) -> None:
    store = SqlStore(postgres_engine, "stop-requests")
    hold_id = await a_hold(store)
    locker = create_engine(DatabaseSettings(url=migrated_postgres))
    try:
        async with locker.begin() as connection:
            await connection.execute(
                select(HoldRow.id).where(HoldRow.id == hold_id).with_for_update()
            )
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match="timed out"):
                await store.update_hold(hold_id, one_warning)
            assert time.monotonic() - started < 5
    finally:
        await locker.dispose()
    stored = await store.get_hold(hold_id)
    assert stored is not None and stored.warnings_sent == 0


async def test_sqlite_waits_for_its_write_lock_no_longer_than_the_timeout(tmp_path: Path) -> None:
    settings = DatabaseSettings(embedded_path=tmp_path / "t.db", statement_timeout_s=TIMEOUT_S)
    engine, other = create_engine(settings), create_engine(settings)
    try:
        await migrate.upgrade(engine)
        store = SqlStore(engine, "stop-requests")
        hold_id = await a_hold(store)
        # Another connection on the file (as the embedded bus has) holds the write lock.
        async with other.begin() as connection:
            await connection.execute(
                update(HoldRow).where(HoldRow.id == hold_id).values(state_reason="held")
            )
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                await store.update_hold(hold_id, one_warning)
            assert time.monotonic() - started < 5
    finally:
        await other.dispose()
        await engine.dispose()
