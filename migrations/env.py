"""Alembic environment.

Stopper runs migrations from code (`stopper.adapters.db.migrate`), which hands over a live
connection. Run by the `alembic` command instead, the URL comes from Stopper's settings.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection

from stopper.adapters.db.engine import create_engine
from stopper.adapters.db.models import Base
from stopper.config import DatabaseSettings

target_metadata = Base.metadata


def _migrate(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def _migrate_with_settings() -> None:
    engine = create_engine(DatabaseSettings())
    async with engine.begin() as connection:
        await connection.run_sync(_migrate)
    await engine.dispose()


connection = context.config.attributes.get("connection")
if connection is not None:
    _migrate(connection)
else:
    asyncio.run(_migrate_with_settings())
