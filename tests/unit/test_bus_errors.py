"""Kafka errors as Stopper sees them, with aiokafka's own error classes: retryable exactly when
aiokafka flags them `retriable` (and for the client's own timeout); a refused call is never
looped on by the consumers or the background loops."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Sequence

import aiokafka.errors as kafka
import pytest
from prometheus_client import REGISTRY

from stopper.adapters.kafka_bus import bus_error
from stopper.app.background import RefusedLoops, run_periodically
from stopper.app.consuming import consume
from stopper.app.ports import Message
from stopper.errors import BusRefused, BusUnavailable
from tests.unit.fakes import FakeSubscription, message

_KAFKA_ERRORS = sorted(
    (c for _, c in inspect.getmembers(kafka, inspect.isclass) if issubclass(c, kafka.KafkaError)),
    key=lambda c: c.__name__,
)


@pytest.mark.parametrize(
    "error",
    [
        kafka.KafkaConnectionError,
        kafka.NotLeaderForPartitionError,
        kafka.LeaderNotAvailableError,
        kafka.RequestTimedOutError,
        kafka.NotEnoughReplicasError,
        kafka.KafkaTimeoutError,  # not flagged: the client's own wait ran out
        kafka.ProducerClosed,  # not flagged: the process is stopping
    ],
)
def test_what_may_succeed_later_is_bus_unavailable(error: type[kafka.KafkaError]) -> None:
    classified = bus_error(error(), "publishing")
    assert type(classified) is BusUnavailable
    assert classified.retryable
    assert str(classified) == f"publishing: {error.__name__}"


@pytest.mark.parametrize(
    "error",
    [
        kafka.MessageSizeTooLargeError,
        kafka.RecordTooLargeError,
        kafka.TopicAuthorizationFailedError,
        kafka.InvalidTopicError,
        kafka.CommitFailedError,
        kafka.UnsupportedVersionError,
    ],
)
def test_what_would_be_refused_again_is_bus_refused(error: type[kafka.KafkaError]) -> None:
    classified = bus_error(error(), "publishing")
    assert type(classified) is BusRefused
    assert not classified.retryable


@pytest.mark.parametrize("error", _KAFKA_ERRORS, ids=lambda c: c.__name__)
def test_every_aiokafka_error_follows_its_retriable_flag(error: type[kafka.KafkaError]) -> None:
    transient = error.retriable or issubclass(
        error, (kafka.KafkaTimeoutError, kafka.ProducerClosed)
    )
    assert bus_error(error(), "x").retryable is bool(transient)


def consumer_errors(name: str) -> float:
    value = REGISTRY.get_sample_value("stopper_consumer_errors_total", {"consumer": name})
    return value or 0.0


async def test_a_batch_the_bus_refuses_is_tried_again_slowly_and_nothing_is_skipped() -> None:
    stopping = asyncio.Event()
    subscription = FakeSubscription([[message(b"a", 0)], [message(b"b", 1)]], stopping)
    refusals = RefusedLoops()
    calls: list[int] = []
    seen_refused: list[frozenset[str]] = []

    async def handle(batch: Sequence[Message]) -> None:
        calls.append(batch[0].offset)
        seen_refused.append(refusals.names())
        if len(calls) <= 2:
            raise BusRefused("dead letter too large")

    before = consumer_errors("refused")
    await asyncio.wait_for(
        consume(
            subscription,
            handle,
            name="refused",
            stopping=stopping,
            retry_delay_s=0.001,
            refusals=refusals,
            refused_retry_s=0.05,
        ),
        5,
    )
    # The same batch again (never the next one before it), until the bus took it.
    assert calls == [0, 0, 0, 1]
    assert seen_refused == [frozenset(), {"refused"}, {"refused"}, frozenset()]
    assert subscription.committed == [[0], [1]]
    assert consumer_errors("refused") == before + 2


async def test_a_refusal_waits_its_own_delay_not_the_retry_delay() -> None:
    stopping = asyncio.Event()
    subscription = FakeSubscription([[message(b"a", 0)]], stopping)
    calls: list[float] = []
    loop = asyncio.get_running_loop()

    async def handle(batch: Sequence[Message]) -> None:
        calls.append(loop.time())
        if len(calls) == 1:
            raise BusRefused("record too large")

    await asyncio.wait_for(
        consume(
            subscription,
            handle,
            name="slow",
            stopping=stopping,
            retry_delay_s=0.001,
            refused_retry_s=0.3,
        ),
        5,
    )
    assert len(calls) == 2 and calls[1] - calls[0] >= 0.3


async def test_a_retryable_failure_is_still_retried() -> None:
    stopping = asyncio.Event()
    subscription = FakeSubscription([[message(b"a", 0)]], stopping)
    failures = [BusUnavailable("broker away"), BusUnavailable("still away")]

    async def handle(batch: Sequence[Message]) -> None:
        if failures:
            raise failures.pop(0)

    await asyncio.wait_for(
        consume(subscription, handle, name="retried", stopping=stopping, retry_delay_s=0.001), 5
    )
    assert subscription.committed == [[0]]


class RefusingSubscription(FakeSubscription):
    def __init__(self, stopping: asyncio.Event, refuse_reads: bool) -> None:
        super().__init__([[message(b"a", 0)], [message(b"b", 1)]], stopping)
        self._refuse_reads = refuse_reads

    async def next_batch(self) -> Sequence[Message]:
        if self._refuse_reads:
            raise BusRefused("topic not readable")
        return await super().next_batch()

    async def commit(self, batch: Sequence[Message]) -> None:
        raise BusRefused("commit after a rebalance")


class RefusingReads(FakeSubscription):
    """Refuses the first `refusals` reads, then hands out its batches."""

    def __init__(self, stopping: asyncio.Event, refusals: int) -> None:
        super().__init__([[message(b"a", 0)]], stopping)
        self.refusals = refusals

    async def next_batch(self) -> Sequence[Message]:
        if self.refusals:
            self.refusals -= 1
            raise BusRefused("topic not readable")
        return await super().next_batch()


async def test_a_refused_read_is_asked_again_and_a_refused_commit_is_harmless() -> None:
    stopping = asyncio.Event()
    refusals = RefusedLoops()
    reads_refused = RefusingReads(stopping, refusals=2)
    handled: list[int] = []

    async def handle(batch: Sequence[Message]) -> None:
        handled.append(batch[0].offset)

    await asyncio.wait_for(
        consume(
            reads_refused,
            handle,
            name="r",
            stopping=stopping,
            refusals=refusals,
            refused_retry_s=0.01,
        ),
        5,
    )
    assert handled == [0] and reads_refused.refusals == 0 and reads_refused.closed
    assert refusals.names() == frozenset()  # it got on: ready again

    # A refused commit is harmless: the records come again and the handler recognises them.
    stopping = asyncio.Event()
    commits_refused = RefusingSubscription(stopping, refuse_reads=False)
    await asyncio.wait_for(consume(commits_refused, handle, name="c", stopping=stopping), 5)
    assert handled == [0, 0, 1]


async def test_a_background_step_the_bus_refuses_is_tried_again_slowly() -> None:
    stopping = asyncio.Event()
    refusals = RefusedLoops()
    steps: list[frozenset[str]] = []

    async def relay() -> int:
        steps.append(refusals.names())
        if len(steps) == 1:
            raise BusUnavailable("broker away")  # retried at its own pace
        if len(steps) == 2:
            raise BusRefused("record too large")  # tried again, slowly
        stopping.set()
        return 1

    started = asyncio.get_running_loop().time()
    await asyncio.wait_for(
        run_periodically(
            "relay",
            relay,
            interval_s=0.001,
            stopping=stopping,
            refusals=refusals,
            refused_retry_s=0.2,
        ),
        5,
    )
    assert steps == [frozenset(), frozenset(), {"relay"}]
    assert refusals.names() == frozenset()
    assert asyncio.get_running_loop().time() - started >= 0.2
