"""`PrioritySlots`: at most so many holders; waiters with priority first, in order within each
kind; a cancelled waiter gives its place (or a slot just handed to it) on."""

from __future__ import annotations

import asyncio

import pytest

from stopper.app.slots import Lane, PrioritySlots, bulk_slots_of


async def test_waiters_with_priority_go_first_and_each_kind_in_turn() -> None:
    slots = PrioritySlots(1)
    order: list[str] = []
    gate = asyncio.Event()

    async def hold(name: str, first: bool) -> None:
        async with slots.taken(first=first):
            order.append(name)
            if name == "holder":
                await gate.wait()

    tasks = [asyncio.create_task(hold("holder", False))]
    await asyncio.sleep(0)
    for name, first in (("a", False), ("b", False), ("x", True), ("y", True)):
        tasks.append(asyncio.create_task(hold(name, first)))
        await asyncio.sleep(0)
    assert slots.waiting == 4
    gate.set()
    await asyncio.gather(*tasks)
    assert order == ["holder", "x", "y", "a", "b"]
    assert slots.waiting == 0


async def test_no_more_holders_than_slots() -> None:
    slots = PrioritySlots(3)
    inside = 0
    most = 0

    async def hold(first: bool) -> None:
        nonlocal inside, most
        async with slots.taken(first=first):
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(0.001)
            inside -= 1

    await asyncio.gather(*(hold(n % 2 == 0) for n in range(20)))
    assert most == 3


async def test_a_cancelled_waiter_leaves_its_place_and_a_slot_handed_to_it_is_passed_on() -> None:
    slots = PrioritySlots(1)
    order: list[str] = []
    gate = asyncio.Event()

    async def hold(name: str, first: bool = False) -> None:
        async with slots.taken(first=first):
            order.append(name)
            if name == "holder":
                await gate.wait()

    holder = asyncio.create_task(hold("holder"))
    await asyncio.sleep(0)
    gone = asyncio.create_task(hold("gone", first=True))
    late = asyncio.create_task(hold("late"))
    await asyncio.sleep(0)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    gate.set()
    await asyncio.gather(holder, late)
    assert order == ["holder", "late"]

    # Handed the slot and cancelled in the same turn: the slot goes on to the next waiter.
    gate.clear()
    holder = asyncio.create_task(hold("holder"))
    await asyncio.sleep(0)
    unlucky = asyncio.create_task(hold("unlucky", first=True))
    after = asyncio.create_task(hold("after"))
    await asyncio.sleep(0)
    gate.set()
    await asyncio.sleep(0)  # the holder leaves, handing its slot to "unlucky"
    unlucky.cancel()
    await asyncio.gather(holder, after, unlucky, return_exceptions=True)
    assert order[-1] == "after" and slots.waiting == 0


def test_a_semaphore_of_no_slots_is_a_mistake() -> None:
    with pytest.raises(ValueError):
        PrioritySlots(0)


async def test_a_live_call_is_let_in_ahead_of_every_queued_bulk_call() -> None:
    slots = PrioritySlots(2)
    order: list[str] = []
    gates = {"live-holder": asyncio.Event(), "bulk-holder": asyncio.Event()}

    async def hold(name: str, lane: Lane) -> None:
        async with slots.taken(lane=lane):
            order.append(name)
            if name in gates:
                await gates[name].wait()

    tasks = [
        asyncio.create_task(hold("bulk-holder", Lane.BULK)),
        asyncio.create_task(hold("live-holder", Lane.LIVE)),
    ]
    await asyncio.sleep(0)
    for name, lane in (("bulk-1", Lane.BULK), ("bulk-2", Lane.BULK), ("live", Lane.LIVE)):
        tasks.append(asyncio.create_task(hold(name, lane)))
        await asyncio.sleep(0)
    assert slots.waiting == 3
    gates["bulk-holder"].set()  # the bulk slot comes free: the live call takes it, not bulk
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert order == ["bulk-holder", "live-holder", "live"]
    gates["live-holder"].set()
    await asyncio.gather(*tasks)
    assert order[3:] == ["bulk-1", "bulk-2"]


async def test_bulk_never_holds_more_than_its_share_and_leaves_the_rest_to_live_calls() -> None:
    slots = PrioritySlots(8)
    assert slots.bulk_slots == 2
    bulk_inside = most_bulk = 0
    release = asyncio.Event()

    async def bulk() -> None:
        nonlocal bulk_inside, most_bulk
        async with slots.taken(lane=Lane.BULK):
            bulk_inside += 1
            most_bulk = max(most_bulk, bulk_inside)
            await release.wait()
            bulk_inside -= 1

    bulks = [asyncio.create_task(bulk()) for _ in range(10)]
    await asyncio.sleep(0)
    assert (most_bulk, slots.waiting) == (2, 8)  # six slots free, and bulk may not take them
    live_in = 0

    async def live() -> None:
        nonlocal live_in
        async with slots.taken():
            live_in += 1
            await asyncio.sleep(0)

    await asyncio.wait_for(asyncio.gather(*(live() for _ in range(6))), timeout=1)
    assert live_in == 6  # at once, beside the bulk calls, none waiting
    release.set()
    await asyncio.gather(*bulks)
    assert most_bulk == 2


def test_bulk_s_share_is_at_least_one_slot_and_never_all_of_several() -> None:
    assert [bulk_slots_of(n) for n in (1, 2, 3, 4, 8, 100)] == [1, 1, 1, 1, 2, 25]


async def test_a_bulk_slot_freed_goes_to_the_next_bulk_waiter_when_no_live_call_waits() -> None:
    slots = PrioritySlots(4)  # bulk: one slot
    order: list[str] = []
    gate = asyncio.Event()

    async def bulk(name: str) -> None:
        async with slots.taken(lane=Lane.BULK):
            order.append(name)
            if name == "first":
                await gate.wait()

    tasks = [asyncio.create_task(bulk(n)) for n in ("first", "second")]
    await asyncio.sleep(0)
    assert (order, slots.bulk_taken) == (["first"], 1)
    gate.set()
    await asyncio.gather(*tasks)
    assert (order, slots.bulk_taken, slots.waiting) == (["first", "second"], 0, 0)
