"""Migrations go up, down and up again, and produce exactly the schema the models describe."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from stopper.adapters.db import migrate
from stopper.adapters.db.engine import create_engine
from stopper.adapters.db.models import Base
from stopper.config import DatabaseSettings
from tests.servers import create_database

pytestmark = pytest.mark.integration

TABLES = {
    "cases",
    "victims",
    "accounts",
    "holds",
    "transfers",
    "hold_transitions",
    "hold_notes",
    "outbox",
    "callback_nonces",
    "trail_edges",
    "payouts",
    "institution_health",
    "api_keys",
    "reconciliation_divergences",
    "bus_records",
    "bus_offsets",
    "iso20022_messages",
    "webhook_subscriptions",
    "webhook_deliveries",
    "webhook_attempts",
    "approval_orders",
    "hold_supplements",
    "reverifications",
}


async def fresh_postgres_database(postgres_url: str) -> str:
    return await create_database(postgres_url, "migrations")


def tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names()) - {"alembic_version"}


def schema_diff(connection: Connection) -> list[object]:
    return list(compare_metadata(MigrationContext.configure(connection), Base.metadata))


def partial_indexes(connection: Connection) -> set[str]:
    """The indexes the database holds with a predicate (alembic's comparison ignores them)."""
    if connection.dialect.name == "postgresql":
        catalog = "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
    else:
        catalog = "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
    return {name for name, sql in connection.execute(text(catalog)) if " WHERE " in sql}


def modelled_partial_indexes(dialect: str) -> set[str]:
    return {
        str(index.name)
        for table in Base.metadata.tables.values()
        for index in table.indexes
        if index.dialect_options[dialect].get("where") is not None
    }


async def up_down_up(engine: AsyncEngine) -> None:
    await migrate.upgrade(engine)
    async with engine.connect() as connection:
        assert await connection.run_sync(tables) == TABLES
        assert await connection.run_sync(schema_diff) == []
        partial = await connection.run_sync(partial_indexes)
        assert partial == modelled_partial_indexes(engine.dialect.name)
        assert {"ix_outbox_unpublished", "ix_holds_freeze_next_attempt_at"} <= partial
    await migrate.downgrade(engine, "base")
    async with engine.connect() as connection:
        assert await connection.run_sync(tables) == set()
    await migrate.upgrade(engine)
    async with engine.connect() as connection:
        assert await connection.run_sync(tables) == TABLES


async def test_postgres_up_down_up(postgres_url: str) -> None:
    engine = create_engine(DatabaseSettings(url=await fresh_postgres_database(postgres_url)))
    try:
        await up_down_up(engine)
    finally:
        await engine.dispose()


async def test_sqlite_up_down_up(tmp_path: Path) -> None:
    engine = create_engine(DatabaseSettings(embedded_path=tmp_path / "m.db"))
    try:
        await up_down_up(engine)
    finally:
        await engine.dispose()
