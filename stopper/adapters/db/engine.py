"""Engine creation: PostgreSQL via asyncpg in production, a SQLite file for the embedded default."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from stopper.config import DatabaseSettings


def create_engine(settings: DatabaseSettings) -> AsyncEngine:
    url = settings.effective_url
    if url.startswith("sqlite"):
        # One connection: SQLite has one writer at a time, and writers that collide wait in
        # SQLite's busy handler, which sleeps in steps of up to 100 ms. Queueing in the pool
        # instead costs microseconds.
        engine = create_async_engine(
            url, connect_args={"timeout": 30}, pool_size=1, max_overflow=0, pool_timeout=60
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    # No pre-ping: it was a round trip before every transaction, the largest single cost in a
    # worker's profile (bench/README.md). After a database restart the first statement on each
    # stale connection fails instead; SQLAlchemy then discards the whole pool, and every caller
    # retries (consumer batches, sweeps, HTTP 503 with Retry-After).
    return create_async_engine(url, pool_size=settings.pool_size, max_overflow=settings.pool_size)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the API read while the consumer writes; foreign keys are off by default in SQLite.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
