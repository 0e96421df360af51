from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from stopper.adapters.db import migrate
from stopper.adapters.db.engine import create_engine
from stopper.adapters.db.store import SqlStore
from stopper.api.app import create_app
from stopper.config import ApiSettings, DatabaseSettings, Settings
from stopper.runtime import Runtime, build_runtime
from tests.servers import create_database, drop_database

T = TypeVar("T")

DEADLINE_S = 40


def fast_registry(tmp_path: Path, deadline_s: int = DEADLINE_S) -> Path:
    """The packaged world with timeouts and waits scaled down so a test runs in seconds;
    Stopper gives up on a hold `deadline_s` after its first attempt."""
    text = resources.files("stopper.data").joinpath("institutions.toml").read_text()
    text = re.sub(r"timeout_ms = \d+", "timeout_ms = 400", text)
    text = re.sub(r"callback_wait_s = \d+", "callback_wait_s = 3", text)
    text = re.sub(r"deadline_s = \d+", f"deadline_s = {deadline_s}", text)
    text = re.sub(r"cooldown_s = \d+", "cooldown_s = 2", text)
    path = tmp_path / "institutions.toml"
    path.write_text(text)
    return path


@asynccontextmanager
async def sql_store_on(
    request: pytest.FixtureRequest, tmp_path: Path, name: str, stop_requests: str
) -> AsyncIterator[SqlStore]:
    """A migrated store of its own on `request.param` ("sqlite": a file in `tmp_path`;
    "postgres": a database named after `name` on the suite's server, dropped after)."""
    url: str | None = None
    if request.param == "sqlite":
        engine = create_engine(DatabaseSettings(embedded_path=tmp_path / f"{name}.db"))
    else:
        url = await create_database(request.getfixturevalue("postgres_url"), name)
        engine = create_engine(DatabaseSettings(url=url))
    await migrate.upgrade(engine)
    try:
        yield SqlStore(engine, stop_requests)
    finally:
        await engine.dispose()
        if url is not None:
            await drop_database(url)


@asynccontextmanager
async def embedded_api(
    api: ApiSettings, db_path: Path
) -> AsyncIterator[tuple[Runtime, httpx.AsyncClient]]:
    """Stopper on the embedded default (SQLite at `db_path`, in-process bus), started, and a
    client that calls its API in-process."""
    runtime = build_runtime(Settings(database=DatabaseSettings(embedded_path=db_path), api=api))
    await runtime.start()
    app = create_app(runtime, start_runtime=False)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://stopper"
        ) as client:
            yield runtime, client
    finally:
        await runtime.stop()


async def eventually(probe: Callable[[], Awaitable[T | None]], timeout: float = 30.0) -> T:
    """Poll `probe` until it returns something other than None (or False)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.1)


async def read_topic(
    bootstrap: str,
    topic: str,
    count: int,
    timeout: float = 30.0,
    keep: Callable[[bytes | None, bytes], bool] | None = None,
) -> list[tuple[bytes | None, bytes, dict[str, str]]]:
    """Read `count` records from the start of `topic` (key, value, headers); with `keep`, only
    the records it keeps count and are returned (a topic other tests write to as well)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        fetch_max_wait_ms=50,
    )
    await consumer.start()
    found: list[tuple[bytes | None, bytes, dict[str, str]]] = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(found) < count and asyncio.get_running_loop().time() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                found += [
                    (r.key, r.value, {k: v.decode() for k, v in r.headers})
                    for r in records
                    if keep is None or keep(r.key, r.value)
                ]
    finally:
        await consumer.stop()
    return found
