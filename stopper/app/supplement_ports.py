"""The store's port for supplements (`SupplementDesk`): a supplement's bookkeeping, and the unit
of work that decides on it with its hold locked.

A supplement (`stopper.domain.supplements`) belongs to its hold: every decision about it is made
with the hold's row locked, so the supplement's state and the hold's amounts and audit move
together, and the hold's own decisions (its first request's answer, a lapse, a re-application)
are ordered before or after it, never in between.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from uuid import UUID

from stopper.app.ports import CallbackNonce, DispatchStore, HoldRecord, HoldUpdate
from stopper.domain.supplements import Supplement


@dataclass(frozen=True, slots=True)
class SupplementRecord:
    """A supplement as stored, with its dispatch bookkeeping (as a hold's: attempts, the lease or
    next attempt, the deadline, the institution's acceptance and the inquiries since, why it is
    where it is). `supplement` is the domain object to change."""

    supplement: Supplement
    attempts: int = 0
    next_attempt_at: datetime | None = None
    dispatch_deadline_at: datetime | None = None
    sent_at: datetime | None = None
    accepted_at: datetime | None = None
    inquiries: int = 0
    state_reason: str | None = None


@dataclass(frozen=True, slots=True)
class SupplementUpdate:
    """What a decision about a supplement changes: on its hold (the audit rows, the reason shown
    to people, the trail followed from its answer), and the supplement as it is to be written."""

    hold: HoldUpdate
    supplement: SupplementRecord
    # What it comes to, counted once it is written (`stopper_supplements_total{outcome}`):
    # sent, failed (given up), cancelled (no longer to be asked); None: nothing to count.
    outcome: str | None = None


SupplementDecision = Callable[[HoldRecord, SupplementRecord], SupplementUpdate | None]
# What `update_supplement` wrote: the hold and the supplement as read (locked), and the update.
SupplementWritten = tuple[HoldRecord, SupplementRecord, SupplementUpdate]


class SupplementStore(Protocol):
    async def update_supplement(
        self,
        hold_id: UUID,
        number: int,
        decide: SupplementDecision,
        nonce: CallbackNonce | None = None,
    ) -> tuple[bool, SupplementWritten | None]:
        """In one transaction: (with `nonce`, a signed callback's, remember it first: a nonce
        used before decides nothing) lock the hold, read it and its supplement `number`, let
        `decide` choose, and write the hold's change (transitions, reason, trail, case events)
        and the supplement. Returns (the nonce was new, what was written); None: no such hold or
        supplement, or `decide` changed nothing."""
        ...

    async def supplements_due(
        self, now: datetime, requested_before: datetime, limit: int
    ) -> list[tuple[UUID, int]]:
        """Supplements (hold, number) whose next step is due: sent past their lease or retry
        time, accepted past their next inquiry, and never sent since before
        `requested_before` (their stop request on the bus not picked up)."""
        ...

    async def supplements_of(self, hold_id: UUID) -> list[SupplementRecord]:
        """The hold's supplements, by number."""
        ...


class SupplementDispatchStore(DispatchStore, SupplementStore, Protocol):
    """The dispatcher's storage: its holds' first requests and their supplements."""
