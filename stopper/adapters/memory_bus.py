"""`InProcessBus`: a message bus in memory, for one process without Kafka on PostgreSQL.

Each topic is an append-only list; each consumer group keeps a committed offset per topic, so
the semantics match Kafka's where Stopper relies on them (at-least-once, commit after work,
redelivery from the last commit when a subscription is reopened). Nothing survives the process:
the embedded default (SQLite) uses `SqliteBus`, which keeps its records in the database file;
one contract test holds the two alike.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Mapping, Sequence

from stopper.app.ports import Clock, Message


class InProcessBus:
    def __init__(self, clock: Clock, max_batch: int = 500, poll_timeout_s: float = 0.2) -> None:
        self._clock = clock
        self._max_batch = max_batch
        self._poll_timeout_s = poll_timeout_s
        self._topics: dict[str, list[Message]] = defaultdict(list)
        self._committed: dict[tuple[str, str], int] = defaultdict(int)
        self._appended = asyncio.Condition()

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def ready(self) -> bool:
        return True

    async def publish(
        self, topic: str, key: str | None, value: bytes, headers: Mapping[str, str] | None = None
    ) -> None:
        async with self._appended:
            log = self._topics[topic]
            log.append(
                Message(topic, 0, len(log), key, value, self._clock.now(), dict(headers or {}))
            )
            self._appended.notify_all()

    def subscribe(
        self, topic: str, group: str, fetch_max_wait_ms: int | None = None
    ) -> InProcessSubscription:
        return InProcessSubscription(self, topic, group)

    async def _read(self, topic: str, position: int) -> Sequence[Message]:
        async with self._appended:
            if len(self._topics[topic]) <= position:
                try:
                    await asyncio.wait_for(
                        self._appended.wait_for(lambda: len(self._topics[topic]) > position),
                        self._poll_timeout_s,
                    )
                except TimeoutError:
                    return []
            return self._topics[topic][position : position + self._max_batch]


class InProcessSubscription:
    def __init__(self, bus: InProcessBus, topic: str, group: str) -> None:
        self._bus = bus
        self._topic = topic
        self._group = group
        self._position = bus._committed[(topic, group)]

    async def next_batch(self) -> Sequence[Message]:
        batch = await self._bus._read(self._topic, self._position)
        self._position += len(batch)
        return batch

    async def commit(self, batch: Sequence[Message]) -> None:
        if batch:
            key = (self._topic, self._group)
            self._bus._committed[key] = max(self._bus._committed[key], batch[-1].offset + 1)

    def lag(self) -> int | None:
        return len(self._bus._topics[self._topic]) - self._position

    async def close(self) -> None:
        return None
