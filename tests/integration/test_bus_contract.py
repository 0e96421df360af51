"""One contract for the buses without a broker: `SqliteBus` (the embedded default, on a SQLite
file) and `InProcessBus` (in memory) hand out, commit and redeliver alike. Then what only the
SQLite bus promises: records on disk before `publish` returns, kept across processes, and no
deadlock with the store that shares the file."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import event, insert

from stopper.adapters.db import migrate
from stopper.adapters.db.engine import create_engine
from stopper.adapters.db.models import OutboxRow
from stopper.adapters.db.store import SqlStore
from stopper.adapters.memory_bus import InProcessBus
from stopper.adapters.sqlite_bus import SqliteBus
from stopper.app.ports import Bus, Message, Subscription
from stopper.app.stop_requests import publish_outbox
from stopper.config import DatabaseSettings
from stopper.errors import BusUnavailable, ConfigurationError
from tests.unit.fakes import FixedClock

MAX_BATCH = 3
POLL_S = 0.2

BusFactory = Callable[[], Awaitable[Bus]]


def open_sqlite_bus(database: DatabaseSettings, poll_s: float = POLL_S) -> SqliteBus:
    return SqliteBus(
        create_engine(database), create_engine(database), FixedClock(), MAX_BATCH, poll_s
    )


async def migrated(db_path: Path) -> DatabaseSettings:
    settings = DatabaseSettings(embedded_path=db_path)
    engine = create_engine(settings)
    await migrate.upgrade(engine)
    await engine.dispose()
    return settings


@pytest.fixture(params=["sqlite", "in-process"])
async def new_bus(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BusFactory]:
    """Makes buses on the same storage: for the SQLite bus the same file (as a restarted
    process sees it), for the in-process bus the same instance (its storage is itself)."""
    started: list[Bus] = []
    shared: list[Bus] = []
    settings = await migrated(tmp_path / "bus.db")

    async def make() -> Bus:
        if request.param == "in-process":
            if not shared:
                shared.append(InProcessBus(FixedClock(), MAX_BATCH, POLL_S))
            bus = shared[0]
        else:
            bus = open_sqlite_bus(settings)
        await bus.start()
        started.append(bus)
        return bus

    yield make
    for bus in started:
        await bus.stop()


def topic() -> str:
    return f"test.{uuid.uuid4().hex[:8]}"


async def publish(bus: Bus, topic: str, *values: bytes) -> None:
    for value in values:
        await bus.publish(topic, value.decode(), value, {"h": value.decode()})


async def drain(subscription: Subscription) -> list[Message]:
    """Every record the subscription hands out until it has nothing more."""
    out: list[Message] = []
    while batch := await subscription.next_batch():
        out.extend(batch)
    return out


def values(messages: list[Message]) -> list[bytes]:
    return [m.value for m in messages]


async def test_records_come_out_in_order_with_their_key_headers_and_time(
    new_bus: BusFactory,
) -> None:
    bus, t = await new_bus(), topic()
    await publish(bus, t, b"a", b"b", b"c", b"d")
    got = await drain(bus.subscribe(t, "g"))
    assert values(got) == [b"a", b"b", b"c", b"d"]
    assert [(m.topic, m.key, dict(m.headers)) for m in got[:1]] == [(t, "a", {"h": "a"})]
    assert all(m.timestamp.tzinfo is not None for m in got)
    assert [m.offset for m in got] == sorted({m.offset for m in got})


async def test_batches_hold_at_most_max_batch(new_bus: BusFactory) -> None:
    bus, t = await new_bus(), topic()
    await publish(bus, t, b"1", b"2", b"3", b"4", b"5")
    subscription = bus.subscribe(t, "g")
    assert values(list(await subscription.next_batch())) == [b"1", b"2", b"3"]
    assert subscription.lag() == 2
    assert values(list(await subscription.next_batch())) == [b"4", b"5"]
    assert subscription.lag() == 0
    await publish(bus, t, b"6")
    assert subscription.lag() == 1


async def test_groups_and_topics_are_independent(new_bus: BusFactory) -> None:
    bus, t, other = await new_bus(), topic(), topic()
    await publish(bus, t, b"x", b"y")
    await publish(bus, other, b"z")
    one, two = bus.subscribe(t, "one"), bus.subscribe(t, "two")
    assert values(list(await two.next_batch())) == [b"x", b"y"]
    await one.commit(await drain(one))
    restarted_two = bus.subscribe(t, "two")
    assert values(await drain(restarted_two)) == [b"x", b"y"]
    assert values(await drain(bus.subscribe(other, "one"))) == [b"z"]


async def test_what_was_not_committed_comes_again_to_the_next_subscription(
    new_bus: BusFactory,
) -> None:
    bus, t = await new_bus(), topic()
    await publish(bus, t, b"1", b"2", b"3", b"4")
    subscription = bus.subscribe(t, "g")
    first = list(await subscription.next_batch())
    await subscription.commit(first)
    await subscription.next_batch()  # handed out, never committed
    await subscription.close()

    assert values(await drain(bus.subscribe(t, "g"))) == [b"4"]
    restarted = await new_bus()  # as the next process finds it
    assert values(await drain(restarted.subscribe(t, "g"))) == [b"4"]


async def test_a_commit_never_moves_the_group_back(new_bus: BusFactory) -> None:
    bus, t = await new_bus(), topic()
    await publish(bus, t, b"1", b"2", b"3")
    subscription = bus.subscribe(t, "g")
    batch = list(await subscription.next_batch())
    await subscription.commit(batch)
    await subscription.commit(batch[:1])
    await publish(bus, t, b"4")
    assert values(await drain(bus.subscribe(t, "g"))) == [b"4"]


async def test_nothing_to_read_is_an_empty_batch_after_a_short_wait(new_bus: BusFactory) -> None:
    bus, t = await new_bus(), topic()
    started = time.monotonic()
    assert list(await bus.subscribe(t, "g").next_batch()) == []
    assert POLL_S * 0.9 <= time.monotonic() - started < POLL_S + 2.0


@pytest.mark.parametrize("kind", ["sqlite", "in-process"])
async def test_a_publish_wakes_a_waiting_reader_at_once(kind: str, tmp_path: Path) -> None:
    long_poll_s = 10.0
    bus: Bus
    if kind == "sqlite":
        database = await migrated(tmp_path / "bus.db")
        bus = open_sqlite_bus(database, long_poll_s)
    else:
        bus = InProcessBus(FixedClock(), MAX_BATCH, long_poll_s)
    await bus.start()
    try:
        t = topic()
        await publish(bus, t, b"before")
        subscription = bus.subscribe(t, "g")
        assert values(list(await subscription.next_batch())) == [b"before"]
        reading = asyncio.create_task(subscription.next_batch())
        await asyncio.sleep(0.05)  # the reader waits
        started = time.monotonic()
        await publish(bus, t, b"now")
        assert values(list(await reading)) == [b"now"]
        assert time.monotonic() - started < 2.0  # not the poll timeout
    finally:
        await bus.stop()


async def test_concurrent_publishes_all_arrive_in_the_order_they_were_made(
    new_bus: BusFactory,
) -> None:
    bus, t = await new_bus(), topic()
    sent = [str(i).encode() for i in range(50)]
    await asyncio.gather(*(bus.publish(t, None, v) for v in sent))
    assert values(await drain(bus.subscribe(t, "g"))) == sent


# --- what only the SQLite bus promises --------------------------------------------------------


@pytest.fixture
async def database(tmp_path: Path) -> DatabaseSettings:
    return await migrated(tmp_path / "stopper.db")


@pytest.fixture
async def sqlite_bus(database: DatabaseSettings) -> AsyncIterator[SqliteBus]:
    bus = open_sqlite_bus(database)
    await bus.start()
    yield bus
    await bus.stop()


def rows_on_disk(database: DatabaseSettings, t: str) -> list[bytes]:
    """What another process would find in the file now."""
    with contextlib.closing(sqlite3.connect(database.embedded_path)) as connection:
        rows = connection.execute(
            "SELECT value FROM bus_records WHERE topic = ? ORDER BY id", (t,)
        ).fetchall()
    return [bytes(r[0]) for r in rows]


async def test_a_record_is_in_the_file_when_publish_returns(
    sqlite_bus: SqliteBus, database: DatabaseSettings
) -> None:
    t = topic()
    await sqlite_bus.publish(t, "k", b"report")
    assert rows_on_disk(database, t) == [b"report"]


async def test_committed_records_are_deleted_and_unread_topics_kept(
    sqlite_bus: SqliteBus, database: DatabaseSettings
) -> None:
    read, unread = topic(), topic()
    await publish(sqlite_bus, read, b"1", b"2", b"3", b"4")
    await publish(sqlite_bus, unread, b"dead letter")
    subscription = sqlite_bus.subscribe(read, "g")
    await subscription.commit(await subscription.next_batch())
    assert rows_on_disk(database, read) == [b"4"]
    assert rows_on_disk(database, unread) == [b"dead letter"]


async def test_records_are_deleted_only_once_every_group_committed_them(
    sqlite_bus: SqliteBus, database: DatabaseSettings
) -> None:
    t = topic()
    await publish(sqlite_bus, t, b"1", b"2")
    fast, slow = sqlite_bus.subscribe(t, "fast"), sqlite_bus.subscribe(t, "slow")
    await slow.commit([])  # nothing yet
    slow_batch = list(await slow.next_batch())
    await slow.commit(slow_batch[:1])
    await fast.commit(await drain(fast))
    assert rows_on_disk(database, t) == [b"2"]


async def test_a_group_that_comes_later_starts_at_the_records_still_kept(
    sqlite_bus: SqliteBus,
) -> None:
    t = topic()
    await publish(sqlite_bus, t, b"1", b"2")
    early = sqlite_bus.subscribe(t, "early")
    await early.commit(list(await early.next_batch())[:1])
    assert values(await drain(sqlite_bus.subscribe(t, "late"))) == [b"2"]


async def test_offsets_keep_growing_after_the_last_record_was_deleted(
    database: DatabaseSettings,
) -> None:
    t = topic()
    bus = open_sqlite_bus(database)
    await bus.start()
    await publish(bus, t, b"1")
    subscription = bus.subscribe(t, "g")
    await subscription.commit(await drain(subscription))
    await bus.stop()
    assert rows_on_disk(database, t) == []

    restarted = open_sqlite_bus(database)
    await restarted.start()
    try:
        await publish(restarted, t, b"2")  # must not get the deleted record's id again
        assert values(await drain(restarted.subscribe(t, "g"))) == [b"2"]
    finally:
        await restarted.stop()


async def test_the_outbox_relay_publishes_while_it_holds_the_stores_connection(
    sqlite_bus: SqliteBus, database: DatabaseSettings
) -> None:
    engine = create_engine(database)  # the store's: one connection
    store = SqlStore(engine, "stop-requests")
    t = topic()
    try:
        async with engine.begin() as connection:
            await connection.execute(
                insert(OutboxRow).values(
                    topic=t, key="h", payload={"n": 1}, headers={}, created_at=datetime.now(UTC)
                )
            )
        relayed = await asyncio.wait_for(
            store.relay_outbox(lambda messages: publish_outbox(sqlite_bus, messages), 10), 10
        )
    finally:
        await engine.dispose()
    assert relayed == 1
    assert rows_on_disk(database, t) == [b'{"n": 1}']


async def test_no_table_is_bus_unavailable(tmp_path: Path) -> None:
    bus = open_sqlite_bus(DatabaseSettings(embedded_path=tmp_path / "empty.db"))
    await bus.start()
    try:
        with pytest.raises(BusUnavailable):
            await bus.publish("t", None, b"x")
        with pytest.raises(BusUnavailable):
            await bus.subscribe("t", "g").next_batch()
    finally:
        await bus.stop()


async def test_a_stopped_bus_takes_nothing(sqlite_bus: SqliteBus) -> None:
    await sqlite_bus.stop()
    assert not await sqlite_bus.ready()
    with pytest.raises(BusUnavailable):
        await sqlite_bus.publish("t", None, b"x")


async def test_publishes_and_commits_made_together_share_a_transaction(
    database: DatabaseSettings,
) -> None:
    engine = create_engine(database)
    commits: list[object] = []
    event.listen(engine.sync_engine, "commit", commits.append)
    bus = SqliteBus(engine, create_engine(database), FixedClock(), MAX_BATCH, POLL_S)
    await bus.start()
    t = topic()
    try:
        await publish(bus, t, b"first")
        subscription = bus.subscribe(t, "g")
        batch = await subscription.next_batch()  # joining the group is a transaction too
        commits.clear()
        await asyncio.gather(
            subscription.commit(batch), *(bus.publish(t, None, b"x") for _ in range(20))
        )
        assert len(commits) == 1
        await bus.publish(t, None, b"alone")
        assert len(commits) == 2
    finally:
        await bus.stop()
    assert rows_on_disk(database, t) == [b"x"] * 20 + [b"alone"]


def test_only_sqlite() -> None:
    engine = create_engine(DatabaseSettings(url="postgresql+asyncpg://u:p@127.0.0.1:1/db"))
    with pytest.raises(ConfigurationError, match="SQLite only"):
        SqliteBus(engine, engine, FixedClock())
