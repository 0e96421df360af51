"""Engine creation: PostgreSQL via asyncpg in production, a SQLite file for the embedded default.

Every session has a statement timeout (`DatabaseSettings.statement_timeout_s`): a statement
that runs longer on PostgreSQL, or waits longer for SQLite's write lock, fails (as
`StoreUnavailable`, `stopper.adapters.db.errors`) instead of holding a worker, a consumer batch
or an HTTP request without end.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from stopper.config import DatabaseSettings


def create_engine(settings: DatabaseSettings) -> AsyncEngine:
    url = settings.effective_url
    timeout_ms = max(1, round(settings.statement_timeout_s * 1000))
    if url.startswith("sqlite"):
        # One connection: SQLite has one writer at a time, and writers that collide wait in
        # SQLite's busy handler, which sleeps in steps of up to 100 ms. Queueing in the pool
        # instead costs microseconds. SQLite has no statement timeout: its busy timeout bounds
        # how long a statement waits for the write lock another connection (the embedded
        # bus's) holds.
        engine = create_async_engine(
            url,
            connect_args={"timeout": settings.statement_timeout_s},
            pool_size=1,
            max_overflow=0,
            pool_timeout=60,
        )

        def pragmas(dbapi_connection: Any, _record: Any) -> None:
            # WAL lets the API read while the consumer writes; foreign keys are off by default.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={timeout_ms}")
            cursor.close()

        event.listen(engine.sync_engine, "connect", pragmas)
        return engine
    # No pre-ping: it was a round trip before every transaction, the largest single cost in a
    # worker's profile (bench/README.md). After a database restart the first statement on each
    # stale connection fails instead; SQLAlchemy then discards the whole pool, and every caller
    # retries (consumer batches, sweeps, HTTP 503 with Retry-After).
    return create_async_engine(
        url,
        pool_size=settings.pool_size,
        max_overflow=settings.pool_size,
        # Set when each connection opens: no round trip per session.
        connect_args={"server_settings": {"statement_timeout": str(timeout_ms)}},
    )


async def settle_sqlite_workers(timeout_s: float = 1.0) -> None:
    """Let aiosqlite's worker threads finish while the event loop still runs. A connection that
    failed to open (aiosqlite 0.22) stops its thread without awaiting it, and the thread then
    reports to the loop: after `asyncio.run` closed the loop, it prints a traceback of its own
    under what should be one line. Call before leaving `asyncio.run`."""
    workers = [
        thread
        for thread in threading.enumerate()
        if thread.name.endswith("(_connection_worker_thread)") and thread.is_alive()
    ]

    def join() -> None:
        for worker in workers:
            worker.join(timeout_s)

    if workers:
        await asyncio.to_thread(join)
