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
from stopper.app.background import run_periodically
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


async def test_a_batch_the_bus_refuses_ends_the_consumer_uncommitted() -> None:
    stopping = asyncio.Event()
    subscription = FakeSubscription([[message(b"a", 0)], [message(b"b", 1)]], stopping)
    calls: list[int] = []

    async def handle(batch: Sequence[Message]) -> None:
        calls.append(batch[0].offset)
        raise BusRefused("dead letter too large")

    before = consumer_errors("refused")
    await asyncio.wait_for(
        consume(subscription, handle, name="refused", stopping=stopping, retry_delay_s=0.001), 5
    )
    assert calls == [0]  # tried once, not looped on, and the next batch never handed out
    assert subscription.committed == []
    assert subscription.closed and not stopping.is_set()
    assert consumer_errors("refused") == before + 1


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


async def test_a_refused_read_ends_the_consumer_and_a_refused_commit_does_not() -> None:
    stopping = asyncio.Event()
    reads_refused = RefusingSubscription(stopping, refuse_reads=True)
    handled: list[int] = []

    async def handle(batch: Sequence[Message]) -> None:
        handled.append(batch[0].offset)

    await asyncio.wait_for(consume(reads_refused, handle, name="r", stopping=stopping), 5)
    assert handled == [] and reads_refused.closed and not stopping.is_set()

    # A refused commit is harmless: the records come again and the handler recognises them.
    commits_refused = RefusingSubscription(stopping, refuse_reads=False)
    await asyncio.wait_for(consume(commits_refused, handle, name="c", stopping=stopping), 5)
    assert handled == [0, 1]


async def test_a_background_step_the_bus_refuses_ends_the_loop() -> None:
    stopping = asyncio.Event()
    steps: list[str] = []

    async def relay() -> int:
        steps.append("relay")
        if len(steps) == 1:
            raise BusUnavailable("broker away")  # retried
        raise BusRefused("record too large")  # not

    await asyncio.wait_for(run_periodically("relay", relay, interval_s=0.001, stopping=stopping), 5)
    assert steps == ["relay", "relay"]
    assert not stopping.is_set()
