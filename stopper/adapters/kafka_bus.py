"""`KafkaBus`: the production message bus on aiokafka.

Facts it is built around (see shared/MEASURED.md): consumers use a short fetch wait (a setting),
offsets are committed by hand only after the work is in the database, a new group starts from
`earliest` (right for a coordinator, and the only reset some brokers get right), and no
idempotent or transactional producer is used, so Stopper never relies on Kafka transactions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, KafkaTimeoutError, ProducerClosed, TopicAlreadyExistsError

from stopper.app.ports import Message
from stopper.config import KafkaSettings
from stopper.errors import BusError, BusRefused, BusUnavailable, ConfigurationError

log = logging.getLogger(__name__)

# Errors aiokafka does not flag `retriable` that say nothing about the call itself: the
# client's own wait ran out (the broker is down or slow; every other outbound call of Stopper
# retries its timeout), or the producer is closing with the process.
_TRANSIENT_UNFLAGGED = (KafkaTimeoutError, ProducerClosed)


def bus_error(error: KafkaError, doing: str) -> BusError:
    """What a Kafka error means to Stopper: `BusUnavailable` (retryable) when aiokafka flags
    it `retriable` (or it is a client-side timeout), else `BusRefused`: the same call would be
    refused again (a record too large, a topic we may not write, a commit after a rebalance)."""
    said = f"{doing}: {type(error).__name__}"
    if error.retriable or isinstance(error, _TRANSIENT_UNFLAGGED):
        return BusUnavailable(said)
    return BusRefused(said)


class KafkaBus:
    def __init__(self, settings: KafkaSettings, topics: Sequence[str] = ()) -> None:
        if settings.bootstrap is None:
            raise ConfigurationError("KafkaBus needs STOPPER_KAFKA_BOOTSTRAP")
        self._settings = settings
        self._bootstrap = settings.bootstrap
        self._topics = tuple(topics)
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        """Create the topics Stopper owns if missing, then start the producer."""
        try:
            await self._ensure_topics()
            producer = AIOKafkaProducer(
                bootstrap_servers=self._bootstrap,
                client_id=f"{self._settings.client_id}-producer",
                acks="all",
                # A report's record leaves at once: waiting 1 ms for company cost 1.5 ms of
                # the median report -> stop request at 200 reports/s (bench/README.md).
                linger_ms=0,
                request_timeout_ms=self._settings.request_timeout_ms,
            )
            await producer.start()
            await self._wait_for_partitions(producer)
        except KafkaError as e:
            raise bus_error(e, "cannot reach Kafka") from e
        self._producer = producer

    async def _wait_for_partitions(self, producer: AIOKafkaProducer) -> None:
        """A topic just created may take a moment to get leaders; don't take reports (and
        answer 503) before every topic can take records."""
        deadline = asyncio.get_running_loop().time() + self._settings.request_timeout_ms / 1000
        for topic in self._topics:
            while True:
                try:
                    if await producer.partitions_for(topic):
                        break
                except KafkaError:
                    if asyncio.get_running_loop().time() > deadline:
                        raise
                if asyncio.get_running_loop().time() > deadline:
                    raise BusUnavailable(f"topic {topic} has no partitions yet")
                await asyncio.sleep(0.2)

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def ready(self) -> bool:
        return self._producer is not None

    async def publish(
        self, topic: str, key: str | None, value: bytes, headers: Mapping[str, str] | None = None
    ) -> None:
        if self._producer is None:
            raise BusUnavailable("the Kafka producer is not started")
        try:
            await self._producer.send_and_wait(
                topic,
                value=value,
                key=key.encode() if key is not None else None,
                headers=[(k, v.encode()) for k, v in (headers or {}).items()],
            )
        except KafkaError as e:
            raise bus_error(e, "Kafka did not take the record") from e

    def subscribe(
        self, topic: str, group: str, fetch_max_wait_ms: int | None = None
    ) -> KafkaSubscription:
        return KafkaSubscription(self._settings, topic, group, fetch_max_wait_ms)

    async def _ensure_topics(self) -> None:
        if not self._topics:
            return
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self._bootstrap,
            client_id=f"{self._settings.client_id}-admin",
            request_timeout_ms=self._settings.request_timeout_ms,
        )
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            missing = [t for t in self._topics if t not in existing]
            if missing:
                # Another instance may create them first.
                with contextlib.suppress(TopicAlreadyExistsError):
                    await admin.create_topics(
                        [NewTopic(t, self._settings.topic_partitions, 1) for t in missing]
                    )
        finally:
            await admin.close()


class KafkaSubscription:
    """One consumer in a group, reading in batches, committing only what it is told to."""

    def __init__(
        self,
        settings: KafkaSettings,
        topic: str,
        group: str,
        fetch_max_wait_ms: int | None = None,
    ) -> None:
        self._settings = settings
        self._topic = topic
        self._consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=settings.bootstrap,
            group_id=group,
            client_id=f"{settings.client_id}-{group}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=(
                settings.fetch_max_wait_ms if fetch_max_wait_ms is None else fetch_max_wait_ms
            ),
            max_poll_records=settings.max_batch,
            request_timeout_ms=settings.request_timeout_ms,
        )
        self._started = False
        self._next: dict[TopicPartition, int] = {}  # next offset to hand out, per partition

    def lag(self) -> int | None:
        if not self._started:
            return None
        behind = 0
        for tp in self._consumer.assignment():
            end = self._consumer.highwater(tp)
            if end is None:
                continue
            behind += max(0, end - self._next.get(tp, end))
        return behind

    async def next_batch(self) -> Sequence[Message]:
        try:
            if not self._started:
                await self._consumer.start()
                self._started = True
            fetched = await self._consumer.getmany(
                timeout_ms=200, max_records=self._settings.max_batch
            )
        except KafkaError as e:
            raise bus_error(e, f"cannot read {self._topic}") from e
        batch = [
            Message(
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                key=record.key.decode(errors="replace") if record.key is not None else None,
                value=record.value if record.value is not None else b"",
                timestamp=datetime.fromtimestamp(record.timestamp / 1000, UTC),
                headers={k: v.decode(errors="replace") for k, v in (record.headers or ())},
            )
            for records in fetched.values()
            for record in records
        ]
        for tp, records in fetched.items():
            if records:
                self._next[tp] = records[-1].offset + 1
        return batch

    async def commit(self, batch: Sequence[Message]) -> None:
        offsets: dict[TopicPartition, int] = {}
        for message in batch:
            tp = TopicPartition(message.topic, message.partition)
            offsets[tp] = max(offsets.get(tp, 0), message.offset + 1)
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except KafkaError as e:
            raise bus_error(e, "cannot commit offsets") from e

    async def close(self) -> None:
        if self._started:
            await self._consumer.stop()
            self._started = False
