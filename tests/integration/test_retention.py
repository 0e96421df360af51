"""Retention on SQLite and PostgreSQL (`RetentionStorage`, `stopper.app.retention`): published
outbox rows go once past their retention, oldest first and a batch at a time; unpublished rows
and young rows stay; callback nonces go once past theirs, and a nonce still kept refuses its
replay."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import pytest
from sqlalchemy import func, insert, select

from stopper.adapters.clock import ManualClock
from stopper.adapters.db.holds import remember_nonces
from stopper.adapters.db.models import CallbackNonceRow, OutboxRow
from stopper.adapters.db.store import SqlStore
from stopper.app.ports import CallbackNonce
from stopper.app.retention import Retention, RetentionPolicy
from tests.integration.helpers import sql_store_on

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlStore]:
    async with sql_store_on(request, tmp_path, "retention", "retention.stop-requests") as store:
        yield store


async def _outbox(store: SqlStore, *rows: tuple[str, datetime, datetime | None]) -> None:
    """Rows (key, written at, published at or None), in this order of ids."""
    async with store.engine.begin() as connection:
        for key, written, published in rows:
            await connection.execute(
                insert(OutboxRow).values(
                    topic="retention.events",
                    key=key,
                    payload={"key": key},
                    headers={},
                    created_at=written,
                    published_at=published,
                )
            )


async def _outbox_keys(store: SqlStore) -> list[str | None]:
    async with store.engine.connect() as connection:
        return list(
            (await connection.execute(select(OutboxRow.key).order_by(OutboxRow.id))).scalars()
        )


async def test_published_rows_go_after_their_retention_unpublished_and_young_ones_stay(
    store: SqlStore,
) -> None:
    day = timedelta(hours=24)
    await _outbox(
        store,
        ("old-published", NOW - 3 * day, NOW - 3 * day),
        ("old-unpublished", NOW - 3 * day, None),  # the bus never took it: kept, and alerted
        ("old-published-2", NOW - 2 * day, NOW - 2 * day),
        ("young-published", NOW - timedelta(hours=1), NOW - timedelta(hours=1)),
        ("young-unpublished", NOW, None),
    )
    assert await store.prune_outbox(NOW - day, 1000) == 2
    assert await _outbox_keys(store) == ["old-unpublished", "young-published", "young-unpublished"]
    assert await store.prune_outbox(NOW - day, 1000) == 0


async def test_a_step_reads_only_the_oldest_rows_and_the_loop_drains_in_batches(
    store: SqlStore,
) -> None:
    old = NOW - timedelta(days=2)
    await _outbox(store, *((f"r{i}", old, old) for i in range(25)))
    clock = ManualClock(NOW)
    retention = Retention(store, RetentionPolicy(timedelta(days=1), timedelta(hours=1), 10), clock)
    assert [await retention.prune_once() for _ in range(4)] == [10, 10, 5, 0]
    assert await _outbox_keys(store) == []
    # A step looks at the oldest `limit` rows by id only (bounded, however large the table):
    # rows are written in time order, so a younger row ahead of an older one is rare, and
    # holds it up only until it ages too.
    await _outbox(store, ("young", NOW, NOW), ("old", old, old))
    assert await store.prune_outbox(NOW - timedelta(days=1), 1) == 0
    assert await store.prune_outbox(NOW - timedelta(days=1), 2) == 1
    assert await _outbox_keys(store) == ["young"]


async def test_old_nonces_go_and_a_kept_nonce_still_refuses_its_replay(store: SqlStore) -> None:
    policy = RetentionPolicy.of(outbox_hours=24, callback_window_s=300)
    assert policy.nonces == timedelta(minutes=20)
    hold_old, hold_kept = uuid4(), uuid4()
    async with store.engine.begin() as connection:
        await remember_nonces(
            store._db,
            connection,
            {
                hold_old: CallbackNonce("BK01", "nonce-old-0001", NOW - timedelta(minutes=30)),
                hold_kept: CallbackNonce("BK01", "nonce-kept-001", NOW - timedelta(minutes=15)),
            },
        )
    retention = Retention(store, policy, ManualClock(NOW))
    assert await retention.prune_once() == 1
    async with store.engine.connect() as connection:
        kept = (await connection.execute(select(CallbackNonceRow.nonce))).scalars().all()
        assert kept == ["nonce-kept-001"]
    async with store.engine.begin() as connection:
        replayed = await remember_nonces(
            store._db,
            connection,
            {hold_kept: CallbackNonce("BK01", "nonce-kept-001", NOW)},
        )
    assert replayed == {hold_kept}
    async with store.engine.connect() as connection:
        count = await connection.scalar(select(func.count()).select_from(CallbackNonceRow))
    assert count == 1
