"""Retention: rows Stopper keeps only while they serve, pruned in small batches by any worker.

- A published outbox row has done its work (the bus has the record); it is kept `outbox` long
  after it was written (default a day) for an operator looking into what left, then deleted.
  Stop requests in it name accounts: keeping them for ever would keep account numbers for ever.
- A signed callback's nonce refuses a replay; a replay is refused by its timestamp anyway once
  it is older than the callback window, so a nonce is kept for twice the window (the callback
  may have come at one edge, its replay at the other) and a margin, then deleted.

Neither touches what a use case reads: an unpublished row is never pruned, nor a row younger
than its retention, and the audit (`hold_transitions`) is never pruned."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from stopper import metrics
from stopper.app.ports import Clock

# Past twice the callback window, before a nonce may go.
NONCE_MARGIN = timedelta(minutes=10)


@dataclass(frozen=True)
class RetentionPolicy:
    outbox: timedelta  # how long a published outbox row is kept after it was written
    nonces: timedelta  # how long a callback's nonce is kept after it was received
    batch: int = 1000  # rows of each kind deleted per step

    @classmethod
    def of(cls, outbox_hours: float, callback_window_s: int) -> RetentionPolicy:
        return cls(
            outbox=timedelta(hours=outbox_hours),
            nonces=2 * timedelta(seconds=callback_window_s) + NONCE_MARGIN,
        )


class RetentionStore(Protocol):
    async def prune_outbox(self, written_before: datetime, limit: int) -> int:
        """Delete up to `limit` of the oldest outbox rows that are published and were written
        before `written_before`; how many went."""
        ...

    async def prune_nonces(self, received_before: datetime, limit: int) -> int:
        """Delete up to `limit` callback nonces received before `received_before`."""
        ...


class Retention:
    def __init__(self, store: RetentionStore, policy: RetentionPolicy, clock: Clock) -> None:
        self._store, self._policy, self._clock = store, policy, clock

    async def prune_once(self) -> int:
        """One batch of each kind; how many rows went (more may be due: call again at once)."""
        now = self._clock.now()
        outbox = await self._store.prune_outbox(now - self._policy.outbox, self._policy.batch)
        nonces = await self._store.prune_nonces(now - self._policy.nonces, self._policy.batch)
        metrics.PRUNED.labels("outbox").inc(outbox)
        metrics.PRUNED.labels("callback_nonces").inc(nonces)
        return outbox + nonces
