"""Run the Alembic migrations from code (start-up, tests) on an async engine."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

import stopper


def migrations_dir() -> Path:
    """`migrations/` of the source tree, or its copy inside an installed wheel."""
    package = Path(stopper.__file__).resolve().parent
    for candidate in (package / "_migrations", package.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise FileNotFoundError("Alembic migrations not found next to the stopper package")


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    return config


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    await _run(engine, lambda cfg: command.upgrade(cfg, revision))


async def downgrade(engine: AsyncEngine, revision: str = "base") -> None:
    await _run(engine, lambda cfg: command.downgrade(cfg, revision))


async def at_head(engine: AsyncEngine) -> bool:
    """Whether the database's schema is the newest these migrations know (readiness: a
    process must not serve on a schema a migration has not reached yet)."""

    def check(connection: Connection) -> bool:
        heads = set(ScriptDirectory.from_config(alembic_config()).get_heads())
        current = set(MigrationContext.configure(connection).get_current_heads())
        return current == heads

    async with engine.connect() as connection:
        return await connection.run_sync(check)


async def _run(engine: AsyncEngine, action: Callable[[Config], None]) -> None:
    def run_sync(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        action(config)

    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # A migration may rewrite a large table: the sessions' statement timeout is for
            # the work Stopper does, not for this.
            await connection.execute(text("SET LOCAL statement_timeout = 0"))
        await connection.run_sync(run_sync)
