"""`PrioritySlots`: at most so many holders; waiters with priority first, in order within each
kind; a cancelled waiter gives its place (or a slot just handed to it) on."""

from __future__ import annotations

import asyncio

import pytest

from stopper.app.slots import PrioritySlots


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
