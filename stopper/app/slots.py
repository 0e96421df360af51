"""`PrioritySlots`: a semaphore with three lanes, whose waiters with priority are let in first.

The gateway holds one per institution: at most the institution's `concurrency` calls at once
(`InstitutionGateway`). When every slot is taken, calls wait in their lane:
- `Lane.FIRST`: a stop request for a known mule account; it takes the next free slot before any
  other waiter;
- `Lane.LIVE`: every other call of live work (stop requests, inquiries, orders, reconciliation);
- `Lane.BULK`: bulk work (a re-verification's status queries): it takes a slot only when no live
  waiter wants one, and never more than `bulk_slots` at once, fewer than all the slots (unless
  there is only one), so a live call finds a slot bulk work cannot hold and never queues behind
  it.
Within a lane calls go in the order they came. A waiter that is cancelled gives its place up;
one cancelled just as a slot was handed to it hands the slot on.
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

# Bulk work's share of an institution's slots (at least one, and one fewer than all).
BULK_SHARE = 0.25


class Lane(enum.IntEnum):
    FIRST = 0
    LIVE = 1
    BULK = 2


def bulk_slots_of(slots: int) -> int:
    """How many of `slots` bulk work may hold at once: its share, at least one, and (with more
    than one slot) always one fewer than all."""
    if slots == 1:
        return 1
    return max(1, min(slots - 1, int(slots * BULK_SHARE)))


class PrioritySlots:
    def __init__(self, slots: int, bulk_slots: int | None = None) -> None:
        if slots < 1:
            raise ValueError("at least one slot")
        self._free = slots
        self.bulk_slots = bulk_slots_of(slots) if bulk_slots is None else bulk_slots
        if not 1 <= self.bulk_slots <= slots:
            raise ValueError("bulk work takes at least one slot and at most all")
        self.bulk_taken = 0
        # A queue per lane: each waiter a future set when a slot is theirs.
        self._queues: tuple[deque[asyncio.Future[None]], ...] = tuple(deque() for _ in Lane)

    @property
    def waiting(self) -> int:
        return sum(len(queue) for queue in self._queues)

    def _live_waiting(self) -> bool:
        return bool(self._queues[Lane.FIRST] or self._queues[Lane.LIVE])

    @asynccontextmanager
    async def taken(self, *, first: bool = False, lane: Lane | None = None) -> AsyncIterator[None]:
        """Hold a slot for the block, in `lane` (with `first`: `Lane.FIRST`; by default
        `Lane.LIVE`)."""
        chosen = lane if lane is not None else (Lane.FIRST if first else Lane.LIVE)
        await self._acquire(chosen)
        try:
            yield
        finally:
            self._release(chosen)

    async def _acquire(self, lane: Lane) -> None:
        if lane is Lane.BULK:
            if self._free > 0 and not self.waiting and self.bulk_taken < self.bulk_slots:
                self._free -= 1
                self.bulk_taken += 1
                return
        elif self._free > 0 and not self._live_waiting():
            self._free -= 1
            return
        queue = self._queues[lane]
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue.append(mine)
        try:
            await mine
        except asyncio.CancelledError:
            if mine.done() and not mine.cancelled():
                self._release(lane)  # the slot came with the cancellation: pass it on
            elif mine in queue:
                queue.remove(mine)
            raise

    def _release(self, lane: Lane) -> None:
        if lane is Lane.BULK:
            self.bulk_taken -= 1
        for live in (Lane.FIRST, Lane.LIVE):
            if _hand_to_next(self._queues[live]):
                return  # the slot goes straight to it
        if self.bulk_taken < self.bulk_slots and _hand_to_next(self._queues[Lane.BULK]):
            self.bulk_taken += 1
            return
        self._free += 1


def _hand_to_next(queue: deque[asyncio.Future[None]]) -> bool:
    while queue:
        waiter = queue.popleft()
        if not waiter.done():
            waiter.set_result(None)
            return True
    return False
