"""What a decision sets on a stored hold besides its state: one small frozen type per kind.

A use case decides on a `HoldRecord` and returns a `HoldUpdate`: the transitions it made on the
domain hold, and at most one of these changes to the record's bookkeeping (attempts, leases,
deadlines, orders, the reason shown to people). Each change holds exactly what it sets and sets
it with `apply`, on a copy of the record (`HoldRecord.copy`); the store writes the record that
results and the unit fake keeps it, so neither knows a column name a use case chose.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from stopper.app.ports import HoldRecord


class HoldChange(Protocol):
    def apply(self, record: HoldRecord) -> HoldRecord:
        """A copy of `record` with this change made (the domain hold is shared, not copied)."""
        ...


# Orders sent after the stop (a formal freeze, a return, a release): the attempts of each kind.


class Order(enum.StrEnum):
    FREEZE = "freeze"
    RETURN = "return"
    RELEASE = "release"


def order_progress(record: HoldRecord, order: Order) -> tuple[int, datetime | None]:
    """Attempts made so far at `order`, and when the next is due (None: nothing to send)."""
    if order is Order.FREEZE:
        return record.freeze_attempts, record.freeze_next_attempt_at
    if order is Order.RELEASE:
        return record.release_attempts, record.release_next_attempt_at
    return record.return_attempts, record.return_next_attempt_at


def _with_progress(
    record: HoldRecord, order: Order, attempts: int, next_attempt_at: datetime | None
) -> HoldRecord:
    changed = record.copy()
    if order is Order.FREEZE:
        changed.freeze_attempts, changed.freeze_next_attempt_at = attempts, next_attempt_at
    elif order is Order.RELEASE:
        changed.release_attempts, changed.release_next_attempt_at = attempts, next_attempt_at
    else:
        changed.return_attempts, changed.return_next_attempt_at = attempts, next_attempt_at
    return changed


@dataclass(frozen=True, slots=True)
class OrderLeased:
    """An attempt at `order` is about to be sent (the `attempts`-th), under a lease until
    `next_attempt_at`."""

    order: Order
    attempts: int
    next_attempt_at: datetime

    def apply(self, record: HoldRecord) -> HoldRecord:
        return _with_progress(record, self.order, self.attempts, self.next_attempt_at)


@dataclass(frozen=True, slots=True)
class OrderProgress:
    """After an attempt at `order`: attempts made, the next one due (None: none, settled or
    given up), and why."""

    order: Order
    attempts: int
    next_attempt_at: datetime | None
    reason: str | None

    def apply(self, record: HoldRecord) -> HoldRecord:
        changed = _with_progress(record, self.order, self.attempts, self.next_attempt_at)
        changed.state_reason = self.reason
        return changed


# Stop requests: the dispatcher's attempts, inquiries and answers.


@dataclass(frozen=True, slots=True)
class AttemptClaimed:
    """A stop request is about to be sent: the attempt it is, and its lease (`next_attempt_at`:
    when the sweeper may take it over), within the deadline the first attempt set."""

    attempts: int
    next_attempt_at: datetime
    dispatch_deadline_at: datetime
    sent_at: datetime

    def apply(self, record: HoldRecord) -> HoldRecord:
        changed = record.copy()
        changed.attempts = self.attempts
        changed.next_attempt_at = self.next_attempt_at
        changed.dispatch_deadline_at = self.dispatch_deadline_at
        changed.sent_at = self.sent_at
        return changed


@dataclass(frozen=True, slots=True)
class InquiryClaimed:
    """A status inquiry about an accepted request is about to be made, under a lease."""

    inquiries: int
    next_attempt_at: datetime

    def apply(self, record: HoldRecord) -> HoldRecord:
        changed = record.copy()
        changed.inquiries = self.inquiries
        changed.next_attempt_at = self.next_attempt_at
        return changed


@dataclass(frozen=True, slots=True)
class Backoff:
    """No usable outcome yet: the next attempt (or inquiry) is due at `next_attempt_at`."""

    next_attempt_at: datetime
    reason: str

    def apply(self, record: HoldRecord) -> HoldRecord:
        changed = record.copy()
        changed.next_attempt_at = self.next_attempt_at
        changed.state_reason = self.reason
        return changed


@dataclass(frozen=True, slots=True)
class NotAttempted:
    """The request was not even made (an open breaker): as `Backoff`, and the attempt it had
    claimed is not counted (`attempts`: the count before the claim)."""

    attempts: int
    next_attempt_at: datetime
    reason: str

    def apply(self, record: HoldRecord) -> HoldRecord:
        changed = record.copy()
        changed.attempts = self.attempts
        changed.next_attempt_at = self.next_attempt_at
        changed.state_reason = self.reason
        return changed


@dataclass(frozen=True, slots=True)
class Concluded:
    """Nothing is due any more (an answer came, or Stopper gave up), and why."""

    reason: str | None

    def apply(self, record: HoldRecord) -> HoldRecord:
        changed = record.copy()
        changed.next_attempt_at = None
        changed.state_reason = self.reason
        return changed


@dataclass(frozen=True, slots=True)
class Confirmed:
    """The institution holds the money: as `Concluded`, and the stop lapses at `stop_expires_at`."""

    reason: str | None
    confirmed_at: datetime
    stop_expires_at: datetime

    def apply(self, record: HoldRecord) -> HoldRecord:
        changed = record.copy()
        changed.next_attempt_at = None
        changed.state_reason = self.reason
        changed.confirmed_at = self.confirmed_at
        changed.stop_expires_at = self.stop_expires_at
        return changed


@dataclass(frozen=True, slots=True)
class Accepted:
    """The institution accepted the request and owes its answer: asked about from
    `next_attempt_at` on (no inquiry made yet), given up at `dispatch_deadline_at`."""

    accepted_at: datetime
    next_attempt_at: datetime
    dispatch_deadline_at: datetime
    reason: str

    def apply(self, record: HoldRecord) -> HoldRecord:
        changed = record.copy()
        changed.accepted_at = self.accepted_at
        changed.inquiries = 0
        changed.next_attempt_at = self.next_attempt_at
        changed.dispatch_deadline_at = self.dispatch_deadline_at
        changed.state_reason = self.reason
        return changed


@dataclass(frozen=True, slots=True)
class Unanswered:
    """No attempt at the request was answered, and no more are to be made: the institution is
    asked about it from `next_attempt_at` on (no inquiry made yet), given up on at
    `dispatch_deadline_at`. Never accepted, so `accepted_at` stays unset."""

    next_attempt_at: datetime
    dispatch_deadline_at: datetime
    reason: str

    def apply(self, record: HoldRecord) -> HoldRecord:
        changed = record.copy()
        changed.accepted_at = None
        changed.inquiries = 0
        changed.next_attempt_at = self.next_attempt_at
        changed.dispatch_deadline_at = self.dispatch_deadline_at
        changed.state_reason = self.reason
        return changed


@dataclass(frozen=True, slots=True)
class Resent:
    """The institution has no record of an accepted request: sent again at `next_attempt_at`
    with a fresh deadline, no longer accepted."""

    next_attempt_at: datetime
    dispatch_deadline_at: datetime
    reason: str

    def apply(self, record: HoldRecord) -> HoldRecord:
        changed = record.copy()
        changed.next_attempt_at = self.next_attempt_at
        changed.dispatch_deadline_at = self.dispatch_deadline_at
        changed.accepted_at = None
        changed.state_reason = self.reason
        return changed


@dataclass(frozen=True, slots=True)
class ReasonShown:
    """Nothing due changes; people are told `reason` (a supplement refused or given up on while
    the hold's own stop stands)."""

    reason: str

    def apply(self, record: HoldRecord) -> HoldRecord:
        changed = record.copy()
        changed.state_reason = self.reason
        return changed


# Deadlines.


@dataclass(frozen=True, slots=True)
class Reapplied:
    """A stop asked for again: a new generation with no attempt made, no stop and no warning."""

    dispatch_deadline_at: datetime
    reason: str

    def apply(self, record: HoldRecord) -> HoldRecord:
        changed = record.copy()
        changed.attempts = 0
        changed.next_attempt_at = None
        changed.dispatch_deadline_at = self.dispatch_deadline_at
        changed.stop_expires_at = None
        changed.warnings_sent = 0
        changed.state_reason = self.reason
        return changed


@dataclass(frozen=True, slots=True)
class WarningsSent:
    """How many lapse warnings of the current stop (or freeze) have gone out."""

    warnings_sent: int

    def apply(self, record: HoldRecord) -> HoldRecord:
        changed = record.copy()
        changed.warnings_sent = self.warnings_sent
        return changed


# Formal freezes.


@dataclass(frozen=True, slots=True)
class FreezeOrdered:
    """A freeze ordered under `document_ref`, its first attempt due at `next_attempt_at`."""

    document_ref: str
    next_attempt_at: datetime
    reason: str

    def apply(self, record: HoldRecord) -> HoldRecord:
        changed = record.copy()
        changed.freeze_document_ref = self.document_ref
        changed.freeze_attempts = 0
        changed.freeze_next_attempt_at = self.next_attempt_at
        changed.state_reason = self.reason
        return changed


@dataclass(frozen=True, slots=True)
class Frozen:
    """The institution confirmed the freeze: valid until `freeze_expires_at`, no warning out."""

    freeze_expires_at: datetime

    def apply(self, record: HoldRecord) -> HoldRecord:
        changed = record.copy()
        changed.freeze_next_attempt_at = None
        changed.freeze_expires_at = self.freeze_expires_at
        changed.warnings_sent = 0
        changed.state_reason = None
        return changed


# Returns to the victims.


@dataclass(frozen=True, slots=True)
class ReturnOrdered:
    """Return round `round` ordered under `document_ref`, its first attempt due at
    `next_attempt_at`."""

    document_ref: str
    round: int
    next_attempt_at: datetime
    reason: str | None

    def apply(self, record: HoldRecord) -> HoldRecord:
        changed = record.copy()
        changed.return_document_ref = self.document_ref
        changed.return_round = self.round
        changed.return_attempts = 0
        changed.return_next_attempt_at = self.next_attempt_at
        changed.state_reason = self.reason
        return changed


@dataclass(frozen=True, slots=True)
class ReturnResent:
    """The current return round sent again from its first attempt, due at `next_attempt_at`."""

    next_attempt_at: datetime
    reason: str

    def apply(self, record: HoldRecord) -> HoldRecord:
        changed = record.copy()
        changed.return_attempts = 0
        changed.return_next_attempt_at = self.next_attempt_at
        changed.state_reason = self.reason
        return changed


# Releases.


@dataclass(frozen=True, slots=True)
class ReleaseOrdered:
    """A release ordered on `ground` (or sent again from its first attempt), its first attempt
    due at `next_attempt_at` (None: nothing to send, the hold was released at once)."""

    ground: str
    next_attempt_at: datetime | None
    reason: str

    def apply(self, record: HoldRecord) -> HoldRecord:
        changed = record.copy()
        changed.release_ground = self.ground
        changed.release_attempts = 0
        changed.release_next_attempt_at = self.next_attempt_at
        changed.state_reason = self.reason
        return changed
