"""HoldWriter: decisions that arrive together share a transaction, a hold's decisions stay in
order, and one bad decision fails alone. And the backpressure on attempts in flight."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import timedelta
from uuid import UUID

import pytest

from stopper.app.background import BackgroundWork
from stopper.app.batching import HoldWriter
from stopper.app.hold_changes import AttemptClaimed
from stopper.app.ports import CallbackNonce, HoldDecision, HoldRecord, HoldUpdate
from tests.unit.fakes import FakeDispatchStore, requested_hold


class CountingStore(FakeDispatchStore):
    """Records the holds of each batch; can be told to fail the next batch."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[UUID]] = []
        self.fail_next_batch = False

    async def update_holds(
        self,
        decisions: Mapping[UUID, HoldDecision],
        nonces: Mapping[UUID, CallbackNonce] | None = None,
        replayed: set[UUID] | None = None,
    ) -> list[tuple[HoldRecord, HoldUpdate]]:
        self.batches.append(list(decisions))
        if self.fail_next_batch:
            self.fail_next_batch = False
            raise RuntimeError("deadlock detected")
        await asyncio.sleep(0)  # a transaction takes a while: others queue meanwhile
        return await super().update_holds(decisions, nonces, replayed)


def attempts_plus_one(record: HoldRecord) -> HoldUpdate:
    at = record.requested_at + timedelta(seconds=1)
    return HoldUpdate(at=at, change=AttemptClaimed(record.attempts + 1, at, at, at))


def store_with(count: int) -> tuple[CountingStore, list[UUID]]:
    store = CountingStore()
    records = [requested_hold() for _ in range(count)]
    for record in records:
        store.add(record)
    return store, [r.hold.id for r in records]


async def test_decisions_that_arrive_together_share_one_transaction() -> None:
    store, ids = store_with(50)
    writer = HoldWriter(store)
    results = await asyncio.gather(*(writer.apply(h, attempts_plus_one) for h in ids))
    assert store.batches == [ids]
    assert all(r is not None and r[0].hold.id == h for r, h in zip(results, ids, strict=True))
    assert all(store.holds[h].attempts == 1 for h in ids)


async def test_a_lone_decision_is_written_at_once_and_the_batch_is_capped() -> None:
    store, ids = store_with(5)
    writer = HoldWriter(store, max_batch=2)
    assert await writer.apply(ids[0], attempts_plus_one) is not None
    await asyncio.gather(*(writer.apply(h, attempts_plus_one) for h in ids[1:]))
    assert store.batches == [ids[:1], ids[1:3], ids[3:5]]


async def test_decisions_queued_during_a_transaction_go_in_the_next() -> None:
    store, ids = store_with(4)
    writer = HoldWriter(store)
    first = asyncio.create_task(writer.apply(ids[0], attempts_plus_one))
    await asyncio.sleep(0)  # the writer starts its transaction with the first alone
    await asyncio.gather(first, *(writer.apply(h, attempts_plus_one) for h in ids[1:]))
    assert store.batches == [ids[:1], ids[1:]]


async def test_two_decisions_for_one_hold_are_applied_in_order_in_two_transactions() -> None:
    store, [hold_id, other] = store_with(2)
    writer = HoldWriter(store)
    seen: list[int] = []

    def noting(record: HoldRecord) -> HoldUpdate:
        seen.append(record.attempts)
        return attempts_plus_one(record)

    await asyncio.gather(
        writer.apply(hold_id, noting), writer.apply(other, noting), writer.apply(hold_id, noting)
    )
    assert store.batches == [[hold_id, other], [hold_id]]
    assert seen == [0, 0, 1]  # the second decision saw what the first wrote
    assert store.holds[hold_id].attempts == 2


async def test_a_failed_batch_is_retried_one_by_one_and_a_bad_decision_fails_alone() -> None:
    store, ids = store_with(3)
    store.fail_next_batch = True
    writer = HoldWriter(store)

    def broken(record: HoldRecord) -> HoldUpdate:
        raise ValueError("a bug in one decision")

    results = await asyncio.gather(
        writer.apply(ids[0], attempts_plus_one),
        writer.apply(ids[1], broken),
        writer.apply(ids[2], attempts_plus_one),
        return_exceptions=True,
    )
    assert isinstance(results[1], ValueError)
    assert store.holds[ids[0]].attempts == store.holds[ids[2]].attempts == 1
    assert store.holds[ids[1]].attempts == 0


async def test_an_unknown_hold_or_a_decision_to_change_nothing_answers_none() -> None:
    store, [hold_id] = store_with(1)
    writer = HoldWriter(store)
    missing, unchanged = await asyncio.gather(
        writer.apply(UUID(int=7), attempts_plus_one), writer.apply(hold_id, lambda r: None)
    )
    assert missing is None and unchanged is None


async def test_closing_waits_for_the_transaction_under_way() -> None:
    store, [hold_id] = store_with(1)
    writer = HoldWriter(store)
    pending = asyncio.create_task(writer.apply(hold_id, attempts_plus_one))
    await asyncio.sleep(0)
    await writer.close()
    assert pending.done() and store.holds[hold_id].attempts == 1


@pytest.mark.parametrize("max_batch", [1, 3])
async def test_every_decision_is_answered_whatever_the_batch_size(max_batch: int) -> None:
    store, ids = store_with(7)
    writer = HoldWriter(store, max_batch=max_batch)
    await asyncio.gather(*(writer.apply(h, attempts_plus_one) for h in ids + ids))
    assert all(store.holds[h].attempts == 2 for h in ids)


async def test_backpressure_waits_for_room_but_not_for_ever() -> None:
    work = BackgroundWork("test")
    release = asyncio.Event()

    async def held() -> None:
        await release.wait()

    for _ in range(3):
        work.start(held())
    assert len(work) == 3
    assert await work.wait_below(3, timeout_s=0.05) is False  # nobody finished: gave up
    asyncio.get_running_loop().call_later(0.01, release.set)
    assert await work.wait_below(3, timeout_s=5) is True
    await work.wait_idle()
    assert len(work) == 0


async def test_each_waiter_is_let_go_when_the_work_drops_below_its_own_limit() -> None:
    work = BackgroundWork("test")
    releases = [asyncio.Event() for _ in range(4)]

    async def held(release: asyncio.Event) -> None:
        await release.wait()

    for release in releases:
        work.start(held(release))
    below_four = asyncio.create_task(work.wait_below(4, timeout_s=5))
    below_two = asyncio.create_task(work.wait_below(2, timeout_s=5))
    releases[0].set()
    await asyncio.sleep(0.01)
    assert below_four.done() and await below_four is True
    assert not below_two.done()  # three still running
    releases[1].set()
    releases[2].set()
    assert await below_two is True
    assert len(work) == 1
    releases[3].set()
    await work.wait_idle()
