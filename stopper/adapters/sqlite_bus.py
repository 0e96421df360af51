"""`SqliteBus`: the embedded default's message bus, its records in the SQLite database.

Theory of operation. Every topic is the rows of `bus_records` with that topic, in id order;
the id is the record's offset. Each consumer group keeps, per topic, the id of the last record
it committed (`bus_offsets`). So the semantics match Kafka's where Stopper relies on them:

- `publish` returns once the record is committed to the database file: a report answered 202
  survives a SIGKILL of the process a moment later;
- a subscription hands out the records after its group's committed offset, in order, in
  batches, and moves on in memory; `commit` records the offset in the database;
- a new subscription (a restart) starts again from the committed offset: whatever was handed
  out but not committed comes again (at least once; the handlers are idempotent);
- records every group reading a topic has committed are deleted with the commit (a group reads
  a topic from its first `next_batch` on; one that comes later starts at the records still
  kept). Records of a topic no group reads (dead letters, hold events on the embedded default)
  are kept.

Offsets are commit-ordered because SQLite has one writer at a time: a record is given its id
by the transaction that commits it, and no later transaction can commit a smaller one
(AUTOINCREMENT: not even once the last record was deleted). That holds on SQLite only, so the
bus refuses any other database.

Publishes that arrive together share one transaction (group commit); a lone one waits for
nobody. A publish wakes this process's waiting subscriptions at once; a subscription also
looks again every `poll_timeout_s`.

The bus has connections of its own on the store's database file, one to write and one to
read: the outbox relay publishes while its store transaction holds the store's only
connection, and a subscription must not wait behind a publish that waits for the store.
SQLite's WAL lets readers read while one connection writes; writers queue in its busy
timeout. A round of writes is one short transaction.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, insert, select
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from stopper.adapters.db.models import BusOffsetRow, BusRecordRow
from stopper.app.ports import Clock, Message
from stopper.errors import BusUnavailable, ConfigurationError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Record:
    topic: str
    key: str | None
    value: bytes
    headers: dict[str, str]
    published_at: datetime


class SqliteBus:
    """`writes` and `reads` are two engines of one connection each on the database file:
    a subscription reads while a write waits for the store's transaction to end."""

    def __init__(
        self,
        writes: AsyncEngine,
        reads: AsyncEngine,
        clock: Clock,
        max_batch: int = 500,
        poll_timeout_s: float = 0.2,
    ) -> None:
        if writes.dialect.name != "sqlite" or reads.dialect.name != "sqlite":
            raise ConfigurationError("SqliteBus keeps commit-ordered offsets on SQLite only")
        self._writes = writes
        self._reads = reads
        self._clock = clock
        self._max_batch = max_batch
        self._poll_timeout_s = poll_timeout_s
        # What the next write round commits, and who waits for it.
        self._records: list[_Record] = []
        self._offsets: dict[tuple[str, str], int] = {}
        self._waiting: list[asyncio.Future[None]] = []
        self._writer: asyncio.Task[None] | None = None
        self._published = asyncio.Condition()
        # Records this process published, per topic: what waiting subscriptions wait on.
        self._published_count: dict[str, int] = defaultdict(int)
        self._running = False

    async def start(self) -> None:
        # Nothing to connect: the first statement opens the connection. The tables may not be
        # there yet (a process that does not migrate); publishing answers BusUnavailable then.
        self._running = True

    async def stop(self) -> None:
        self._running = False
        if self._writer is not None:
            await self._writer  # what was accepted for publishing is written first
        await self._writes.dispose()
        await self._reads.dispose()

    async def ready(self) -> bool:
        return self._running

    async def publish(
        self, topic: str, key: str | None, value: bytes, headers: Mapping[str, str] | None = None
    ) -> None:
        if not self._running:
            raise BusUnavailable("the embedded bus is not running")
        self._records.append(_Record(topic, key, value, dict(headers or {}), self._clock.now()))
        await self._written()

    async def _written(self) -> None:
        """Wait for the write round that commits what was just queued."""
        written = asyncio.get_running_loop().create_future()
        self._waiting.append(written)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_queued(), name="sqlite-bus-writer")
        await written

    async def _write_queued(self) -> None:
        """Commit what is queued (records, then offsets), one transaction a round, until
        nothing is left: publishes and commits that arrive together share a transaction."""
        while self._waiting:
            records, self._records = self._records, []
            offsets, self._offsets = self._offsets, {}
            waiting, self._waiting = self._waiting, []
            try:
                async with self._writes.begin() as connection:
                    if records:
                        await connection.execute(
                            insert(BusRecordRow),
                            [
                                {
                                    "topic": r.topic,
                                    "key": r.key,
                                    "value": r.value,
                                    "headers": r.headers,
                                    "published_at": r.published_at,
                                }
                                for r in records
                            ],
                        )
                    for (topic, group), offset in offsets.items():
                        await self._write_offset(connection, topic, group, offset)
            except Exception as e:  # nothing of the round is on disk: nobody may go on
                log.warning(
                    "the embedded bus could not write %d records and %d offsets",
                    len(records),
                    len(offsets),
                )
                for future in waiting:
                    if not future.done():
                        failure = BusUnavailable(f"the embedded bus failed: {type(e).__name__}")
                        failure.__cause__ = e
                        future.set_exception(failure)
                continue
            if records:
                async with self._published:
                    for topic, count in Counter(r.topic for r in records).items():
                        self._published_count[topic] += count
                    self._published.notify_all()
            for future in waiting:
                if not future.done():  # a caller that gave up is not answered
                    future.set_result(None)

    async def _write_offset(
        self, connection: AsyncConnection, topic: str, group: str, offset: int
    ) -> None:
        """Record `offset` as the group's (never moving it back), and delete what every group
        reading the topic has committed."""
        upsert = sqlite_insert(BusOffsetRow).values(
            topic=topic, consumer_group=group, committed=offset, committed_at=self._clock.now()
        )
        await connection.execute(
            upsert.on_conflict_do_update(
                index_elements=[BusOffsetRow.topic, BusOffsetRow.consumer_group],
                set_={
                    # SQLite's two-argument max() is the larger of the two.
                    "committed": func.max(BusOffsetRow.committed, upsert.excluded.committed),
                    "committed_at": upsert.excluded.committed_at,
                },
            )
        )
        everyone_done = (
            select(func.min(BusOffsetRow.committed))
            .where(BusOffsetRow.topic == topic)
            .scalar_subquery()
        )
        await connection.execute(
            delete(BusRecordRow).where(
                BusRecordRow.topic == topic, BusRecordRow.id <= everyone_done
            )
        )

    async def _commit(self, topic: str, group: str, offset: int) -> None:
        key = (topic, group)
        self._offsets[key] = max(self._offsets.get(key, 0), offset)
        await self._written()

    def subscribe(
        self, topic: str, group: str, fetch_max_wait_ms: int | None = None
    ) -> SqliteSubscription:
        return SqliteSubscription(self, topic, group)

    async def _wait_for_publish(self, topic: str, seen: int) -> bool:
        """Wait until this process published on `topic` after `seen`; False after the poll
        timeout."""
        async with self._published:
            try:
                await asyncio.wait_for(
                    self._published.wait_for(lambda: self._published_count[topic] != seen),
                    self._poll_timeout_s,
                )
            except TimeoutError:
                return False
        return True

    async def _join(self, topic: str, group: str) -> int:
        """The group's committed offset on `topic`; a group new to the topic is recorded at 0,
        so that records it has not read yet are kept for it from now on."""
        try:
            async with self._writes.begin() as connection:
                await connection.execute(
                    sqlite_insert(BusOffsetRow)
                    .values(
                        topic=topic,
                        consumer_group=group,
                        committed=0,
                        committed_at=self._clock.now(),
                    )
                    .on_conflict_do_nothing()
                )
                committed = await connection.scalar(
                    select(BusOffsetRow.committed).where(
                        BusOffsetRow.topic == topic, BusOffsetRow.consumer_group == group
                    )
                )
        except Exception as e:
            raise BusUnavailable(f"cannot read the offset of {group}: {type(e).__name__}") from e
        return int(committed or 0)

    async def _read(self, topic: str, after: int) -> tuple[list[Message], int]:
        """The next records of `topic` after id `after`, and how many more there are."""
        try:
            async with self._reads.connect() as connection:
                rows = (
                    await connection.execute(
                        select(BusRecordRow)
                        .where(BusRecordRow.topic == topic, BusRecordRow.id > after)
                        .order_by(BusRecordRow.id)
                        .limit(self._max_batch)
                    )
                ).all()
                more = 0
                if len(rows) == self._max_batch:
                    more = int(
                        await connection.scalar(
                            select(func.count())
                            .select_from(BusRecordRow)
                            .where(BusRecordRow.topic == topic, BusRecordRow.id > rows[-1].id)
                        )
                        or 0
                    )
        except Exception as e:
            raise BusUnavailable(f"cannot read {topic}: {type(e).__name__}") from e
        batch = [Message(r.topic, 0, r.id, r.key, r.value, r.published_at, r.headers) for r in rows]
        return batch, more


class SqliteSubscription:
    """One group's reader of one topic; its position starts at the group's committed offset."""

    def __init__(self, bus: SqliteBus, topic: str, group: str) -> None:
        self._bus = bus
        self._topic = topic
        self._group = group
        self._position: int | None = None  # the id of the last record handed out
        self._more = 0  # records beyond the last batch when it was read
        self._seen = 0  # the bus's publish count on the topic when the last batch was read

    async def next_batch(self) -> Sequence[Message]:
        if self._position is None:
            self._position = await self._bus._join(self._topic, self._group)
        batch = await self._read()
        if not batch and await self._bus._wait_for_publish(self._topic, self._seen):
            batch = await self._read()
        return batch

    async def _read(self) -> list[Message]:
        assert self._position is not None
        self._seen = self._bus._published_count[self._topic]
        batch, self._more = await self._bus._read(self._topic, self._position)
        if batch:
            self._position = batch[-1].offset
        return batch

    async def commit(self, batch: Sequence[Message]) -> None:
        if batch:
            await self._bus._commit(self._topic, self._group, max(m.offset for m in batch))

    def lag(self) -> int | None:
        if self._position is None:
            return None
        return self._more + self._bus._published_count[self._topic] - self._seen

    async def close(self) -> None:
        return None
