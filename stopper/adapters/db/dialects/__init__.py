"""What differs between PostgreSQL and SQLite, in one place: one `Database` per dialect."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from stopper.adapters.db.dialects.base import CaseRows, Database, RecordedCases, Row, table_of
from stopper.adapters.db.dialects.postgres import PostgresDatabase
from stopper.adapters.db.dialects.sqlite import SqliteDatabase

__all__ = ["CaseRows", "Database", "RecordedCases", "Row", "database_for", "table_of"]


def database_for(engine: AsyncEngine) -> Database:
    """The `Database` of `engine`'s dialect (PostgreSQL or SQLite)."""
    if engine.dialect.name == "postgresql":
        return PostgresDatabase(engine)
    if engine.dialect.name == "sqlite":
        return SqliteDatabase(engine)
    raise ValueError(f"no store for the {engine.dialect.name} dialect")
