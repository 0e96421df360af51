"""`PrioritySlots`: a semaphore whose waiters with priority are let in first.

The gateway holds one per institution: at most the institution's `concurrency` calls at once
(`InstitutionGateway`). When every slot is taken, calls wait; a call with priority (a stop
request for a known mule account) takes the next free slot before any call without, and within
each kind they go in the order they came. A waiter that is cancelled gives its place up; one
cancelled just as a slot was handed to it hands the slot on.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class PrioritySlots:
    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError("at least one slot")
        self._free = slots
        # Waiters with priority, then the others: each a future set when a slot is theirs.
        self._queues: tuple[deque[asyncio.Future[None]], deque[asyncio.Future[None]]] = (
            deque(),
            deque(),
        )

    @property
    def waiting(self) -> int:
        return sum(len(queue) for queue in self._queues)

    @asynccontextmanager
    async def taken(self, *, first: bool = False) -> AsyncIterator[None]:
        """Hold a slot for the block; with `first`, ahead of every waiter without it."""
        await self._acquire(first)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, first: bool) -> None:
        if self._free > 0 and not self.waiting:
            self._free -= 1
            return
        queue = self._queues[0 if first else 1]
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue.append(mine)
        try:
            await mine
        except asyncio.CancelledError:
            if mine.done() and not mine.cancelled():
                self._release()  # the slot came with the cancellation: pass it on
            elif mine in queue:
                queue.remove(mine)
            raise

    def _release(self) -> None:
        for queue in self._queues:
            while queue:
                waiter = queue.popleft()
                if not waiter.done():
                    waiter.set_result(None)  # the slot goes straight to it
                    return
        self._free += 1
