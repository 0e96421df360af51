"""The SQLite store's one guarantee of safe read-decide-write: one connection at a time."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from stopper.adapters.db.dialects.sqlite import SqliteDatabase
from stopper.adapters.db.engine import create_engine
from stopper.adapters.db.store import SqlStore
from stopper.config import DatabaseSettings
from stopper.errors import ConfigurationError


@pytest.mark.parametrize(
    "pool",
    [
        {"pool_size": 2, "max_overflow": 0},
        {"pool_size": 1, "max_overflow": 1},
        {"poolclass": NullPool},
    ],
)
async def test_a_sqlite_store_refuses_an_engine_that_could_lend_two_connections(
    tmp_path: Path, pool: dict[str, object]
) -> None:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 's.db'}", **pool)
    try:
        with pytest.raises(ConfigurationError, match="one connection"):
            SqlStore(engine, "stop-requests")
    finally:
        await engine.dispose()


async def test_the_embedded_engine_is_one_connection(tmp_path: Path) -> None:
    engine = create_engine(DatabaseSettings(embedded_path=tmp_path / "s.db"))
    try:
        assert isinstance(SqlStore(engine, "stop-requests")._db, SqliteDatabase)
    finally:
        await engine.dispose()
