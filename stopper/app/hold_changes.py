"""What a decision sets on a stored hold besides its state: one small frozen type per kind.

A use case decides on a `HoldRecord` and returns a `HoldUpdate`: the transitions it made on the
domain hold, and at most one of these changes to the record's bookkeeping (attempts, leases,
deadlines, orders, the reason shown to people). Each change holds exactly what it sets and sets
it with `apply`, a copy of the record; the store writes the record that results and the unit fake
keeps it, so neither knows a column name a use case chose.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
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
    if order is Order.FREEZE:
        return replace(record, freeze_attempts=attempts, freeze_next_attempt_at=next_attempt_at)
    if order is Order.RELEASE:
        return replace(record, release_attempts=attempts, release_next_attempt_at=next_attempt_at)
    return replace(record, return_attempts=attempts, return_next_attempt_at=next_attempt_at)


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
        progressed = _with_progress(record, self.order, self.attempts, self.next_attempt_at)
        return replace(progressed, state_reason=self.reason)


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
        return replace(
            record,
            attempts=self.attempts,
            next_attempt_at=self.next_attempt_at,
            dispatch_deadline_at=self.dispatch_deadline_at,
            sent_at=self.sent_at,
        )


@dataclass(frozen=True, slots=True)
class InquiryClaimed:
    """A status inquiry about an accepted request is about to be made, under a lease."""

    inquiries: int
    next_attempt_at: datetime

    def apply(self, record: HoldRecord) -> HoldRecord:
        return replace(record, inquiries=self.inquiries, next_attempt_at=self.next_attempt_at)


@dataclass(frozen=True, slots=True)
class Backoff:
    """No usable outcome yet: the next attempt (or inquiry) is due at `next_attempt_at`."""

    next_attempt_at: datetime
    reason: str

    def apply(self, record: HoldRecord) -> HoldRecord:
        return replace(record, next_attempt_at=self.next_attempt_at, state_reason=self.reason)


@dataclass(frozen=True, slots=True)
class NotAttempted:
    """The request was not even made (an open breaker): as `Backoff`, and the attempt it had
    claimed is not counted (`attempts`: the count before the claim)."""

    attempts: int
    next_attempt_at: datetime
    reason: str

    def apply(self, record: HoldRecord) -> HoldRecord:
        return replace(
            record,
            attempts=self.attempts,
            next_attempt_at=self.next_attempt_at,
            state_reason=self.reason,
        )


@dataclass(frozen=True, slots=True)
class Concluded:
    """Nothing is due any more (an answer came, or Stopper gave up), and why."""

    reason: str | None

    def apply(self, record: HoldRecord) -> HoldRecord:
        return replace(record, next_attempt_at=None, state_reason=self.reason)


@dataclass(frozen=True, slots=True)
class Confirmed:
    """The institution holds the money: as `Concluded`, and the stop lapses at `stop_expires_at`."""

    reason: str | None
    confirmed_at: datetime
    stop_expires_at: datetime

    def apply(self, record: HoldRecord) -> HoldRecord:
        return replace(
            record,
            next_attempt_at=None,
            state_reason=self.reason,
            confirmed_at=self.confirmed_at,
            stop_expires_at=self.stop_expires_at,
        )


@dataclass(frozen=True, slots=True)
class Accepted:
    """The institution accepted the request and owes its answer: asked about from
    `next_attempt_at` on (no inquiry made yet), given up at `dispatch_deadline_at`."""

    accepted_at: datetime
    next_attempt_at: datetime
    dispatch_deadline_at: datetime
    reason: str

    def apply(self, record: HoldRecord) -> HoldRecord:
        return replace(
            record,
            accepted_at=self.accepted_at,
            inquiries=0,
            next_attempt_at=self.next_attempt_at,
            dispatch_deadline_at=self.dispatch_deadline_at,
            state_reason=self.reason,
        )


@dataclass(frozen=True, slots=True)
class Resent:
    """The institution has no record of an accepted request: sent again at `next_attempt_at`
    with a fresh deadline, no longer accepted."""

    next_attempt_at: datetime
    dispatch_deadline_at: datetime
    reason: str

    def apply(self, record: HoldRecord) -> HoldRecord:
        return replace(
            record,
            next_attempt_at=self.next_attempt_at,
            dispatch_deadline_at=self.dispatch_deadline_at,
            accepted_at=None,
            state_reason=self.reason,
        )


@dataclass(frozen=True, slots=True)
class ReasonShown:
    """Nothing due changes; people are told `reason` (a supplement refused or given up on while
    the hold's own stop stands)."""

    reason: str

    def apply(self, record: HoldRecord) -> HoldRecord:
        return replace(record, state_reason=self.reason)


# Deadlines.


@dataclass(frozen=True, slots=True)
class Reapplied:
    """A stop asked for again: a new generation with no attempt made, no stop and no warning."""

    dispatch_deadline_at: datetime
    reason: str

    def apply(self, record: HoldRecord) -> HoldRecord:
        return replace(
            record,
            attempts=0,
            next_attempt_at=None,
            dispatch_deadline_at=self.dispatch_deadline_at,
            stop_expires_at=None,
            warnings_sent=0,
            state_reason=self.reason,
        )


@dataclass(frozen=True, slots=True)
class WarningsSent:
    """How many lapse warnings of the current stop (or freeze) have gone out."""

    warnings_sent: int

    def apply(self, record: HoldRecord) -> HoldRecord:
        return replace(record, warnings_sent=self.warnings_sent)


# Formal freezes.


@dataclass(frozen=True, slots=True)
class FreezeOrdered:
    """A freeze ordered under `document_ref`, its first attempt due at `next_attempt_at`."""

    document_ref: str
    next_attempt_at: datetime
    reason: str

    def apply(self, record: HoldRecord) -> HoldRecord:
        return replace(
            record,
            freeze_document_ref=self.document_ref,
            freeze_attempts=0,
            freeze_next_attempt_at=self.next_attempt_at,
            state_reason=self.reason,
        )


@dataclass(frozen=True, slots=True)
class Frozen:
    """The institution confirmed the freeze: valid until `freeze_expires_at`, no warning out."""

    freeze_expires_at: datetime

    def apply(self, record: HoldRecord) -> HoldRecord:
        return replace(
            record,
            freeze_next_attempt_at=None,
            freeze_expires_at=self.freeze_expires_at,
            warnings_sent=0,
            state_reason=None,
        )


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
        return replace(
            record,
            return_document_ref=self.document_ref,
            return_round=self.round,
            return_attempts=0,
            return_next_attempt_at=self.next_attempt_at,
            state_reason=self.reason,
        )


@dataclass(frozen=True, slots=True)
class ReturnResent:
    """The current return round sent again from its first attempt, due at `next_attempt_at`."""

    next_attempt_at: datetime
    reason: str

    def apply(self, record: HoldRecord) -> HoldRecord:
        return replace(
            record,
            return_attempts=0,
            return_next_attempt_at=self.next_attempt_at,
            state_reason=self.reason,
        )


# Releases.


@dataclass(frozen=True, slots=True)
class ReleaseOrdered:
    """A release ordered on `ground` (or sent again from its first attempt), its first attempt
    due at `next_attempt_at` (None: nothing to send, the hold was released at once)."""

    ground: str
    next_attempt_at: datetime | None
    reason: str

    def apply(self, record: HoldRecord) -> HoldRecord:
        return replace(
            record,
            release_ground=self.ground,
            release_attempts=0,
            release_next_attempt_at=self.next_attempt_at,
            state_reason=self.reason,
        )
