"""Group commit for hold decisions.

Every claim, answer and retry decision of the dispatcher is a small change to one hold. Made
one transaction each, a worker spends its time on round trips to the database (measured in
bench/README.md). `HoldWriter` lets the decisions that arrive while a transaction is under way
share the next one:

- an idle writer starts its transaction at once, so a lone decision waits for nothing;
- under load, one transaction carries every decision queued meanwhile (up to `max_batch`), its
  holds locked, read, decided and written with a handful of statements;
- a hold appears at most once per transaction; a second decision for it waits for the next;
- if a batch fails (a decision raised, a deadlock between trail follows of two cases), its
  decisions are applied one by one, so one bad hold fails alone;
- a signed callback's answer carries its nonce, remembered in the same transaction: a callback
  costs one share of a group commit, and a replayed nonce decides nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from uuid import UUID

from stopper.app.ports import CallbackNonce, HoldDecision, HoldRecord, HoldUnitOfWork, HoldUpdate

log = logging.getLogger(__name__)

Written = tuple[HoldRecord, HoldUpdate] | None
# (the nonce was new, what was written)
_Result = tuple[bool, Written]
_Queued = tuple[UUID, HoldDecision, CallbackNonce | None, "asyncio.Future[_Result]"]


class HoldWriter:
    def __init__(self, store: HoldUnitOfWork, max_batch: int = 500) -> None:
        self._store = store
        self._max_batch = max_batch
        self._queue: deque[_Queued] = deque()
        self._flusher: asyncio.Task[None] | None = None

    async def apply(self, hold_id: UUID, decide: HoldDecision) -> Written:
        """`HoldUnitOfWork.update_hold`, sharing a transaction with whatever else is queued."""
        return (await self._enqueue(hold_id, decide, None))[1]

    async def apply_signed(
        self, hold_id: UUID, decide: HoldDecision, nonce: CallbackNonce
    ) -> tuple[bool, Written]:
        """`apply` for a signed callback's answer: `nonce` is remembered in the same
        transaction, and `decide` runs only if it is new. Returns (new nonce, written)."""
        return await self._enqueue(hold_id, decide, nonce)

    async def _enqueue(
        self, hold_id: UUID, decide: HoldDecision, nonce: CallbackNonce | None
    ) -> _Result:
        done: asyncio.Future[_Result] = asyncio.get_running_loop().create_future()
        self._queue.append((hold_id, decide, nonce, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="hold writer")
        return await done

    async def close(self) -> None:
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)

    async def _flush(self) -> None:
        batch: list[_Queued] = []
        try:
            while self._queue:
                batch = self._take()
                nonces = {h: n for h, _, n, _ in batch if n is not None}
                replayed: set[UUID] = set()
                try:
                    written = await self._store.update_holds(
                        {h: d for h, d, _, _ in batch}, nonces or None, replayed
                    )
                except Exception:
                    if len(batch) > 1:
                        log.warning("a batch of %d hold decisions failed; one by one", len(batch))
                    await self._one_by_one(batch)
                    continue
                results = {record.hold.id: (record, change) for record, change in written}
                for hold_id, _, _, done in batch:
                    if not done.done():
                        done.set_result((hold_id not in replayed, results.get(hold_id)))
        finally:
            # Cancelled (shutdown): nobody waits forever for a decision that was not written.
            for _, _, _, done in [*batch, *self._queue]:
                done.cancel()
            if self._queue:
                self._queue.clear()

    def _take(self) -> list[_Queued]:
        batch: list[_Queued] = []
        later: list[_Queued] = []
        seen: set[UUID] = set()
        while self._queue and len(batch) < self._max_batch:
            item = self._queue.popleft()
            (later if item[0] in seen else batch).append(item)
            seen.add(item[0])
        self._queue.extendleft(reversed(later))
        return batch

    async def _one_by_one(self, batch: list[_Queued]) -> None:
        for hold_id, decide, nonce, done in batch:
            replayed: set[UUID] = set()
            try:
                written = await self._store.update_holds(
                    {hold_id: decide}, {hold_id: nonce} if nonce else None, replayed
                )
            except Exception as e:
                if not done.done():
                    done.set_exception(e)
            else:
                if not done.done():
                    done.set_result((hold_id not in replayed, written[0] if written else None))
