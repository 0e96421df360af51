"""Hand-written fakes of Stopper's ports, for unit tests."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from uuid import UUID

from stopper.app.ports import Message, OpenedCase, RecordOutcome
from stopper.errors import StoreUnavailable


class FixedClock:
    def __init__(self, at: datetime | None = None) -> None:
        self.at = at or datetime.now(UTC)

    def now(self) -> datetime:
        return self.at


@dataclass
class Published:
    topic: str
    key: str | None
    value: bytes
    headers: dict[str, str]


@dataclass
class FakePublisher:
    sent: list[Published] = field(default_factory=list)

    async def publish(
        self, topic: str, key: str | None, value: bytes, headers: Mapping[str, str] | None = None
    ) -> None:
        self.sent.append(Published(topic, key, value, dict(headers or {})))


@dataclass
class FakeIntakeStore:
    """Keeps cases in a dict; `fail_next` makes the next call fail like a lost database."""

    cases: dict[UUID, OpenedCase] = field(default_factory=dict)
    outbox: list[tuple[str, UUID]] = field(default_factory=list)
    fail_next: int = 0

    async def case_fingerprint(self, case_id: UUID) -> str | None:
        case = self.cases.get(case_id)
        return case.fingerprint if case else None

    async def record_opened_cases(
        self, cases: Sequence[OpenedCase], *, stop_request_topic: str
    ) -> RecordOutcome:
        if self.fail_next:
            self.fail_next -= 1
            raise StoreUnavailable("fake database down")
        created, known = [], {}
        for opened in cases:
            if opened.case.id in self.cases:
                known[opened.case.id] = self.cases[opened.case.id].fingerprint
                continue
            self.cases[opened.case.id] = opened
            created.append(opened.case.id)
            self.outbox += [(stop_request_topic, r.hold_id) for r in opened.stop_requests]
        return RecordOutcome(created=created, already_known=known)


class FakeSubscription:
    """Hands out prepared batches; records what was committed."""

    def __init__(self, batches: list[list[Message]], stopping: asyncio.Event) -> None:
        self._batches = batches
        self._stopping = stopping
        self.committed: list[list[int]] = []
        self.closed = False

    async def next_batch(self) -> Sequence[Message]:
        if not self._batches:
            self._stopping.set()
            return []
        return self._batches.pop(0)

    async def commit(self, batch: Sequence[Message]) -> None:
        self.committed.append([m.offset for m in batch])

    async def close(self) -> None:
        self.closed = True


def message(
    value: bytes, offset: int = 0, key: str | None = None, headers: dict[str, str] | None = None
) -> Message:
    return Message("stopper.reports", 0, offset, key, value, datetime.now(UTC), headers or {})
