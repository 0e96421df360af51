"""Domain messages: commands (imperative, something is owed) and events (past tense, it happened).

All are small frozen types; handlers are routed by type, never by string inspection.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID


@dataclass(frozen=True, slots=True)
class SupplementOf:
    """What makes a stop request a *supplement*: it asks for more on a stop already asked for
    (the request whose idempotency key is `adds_to`), the money a trail merge brought there from
    the hold `merged_from`. `number`: the hold's n-th supplement (its key's)."""

    number: int
    adds_to: str
    merged_from: UUID


@dataclass(frozen=True, slots=True)
class RequestStop:
    """A stop request is owed to `institution_code` for one hold: its first request (of the
    generation), or with `supplement` the extra a trail merge asked for afterwards."""

    hold_id: UUID
    case_id: UUID
    institution_code: str
    account_number: str
    currency: str
    amount: int
    layer: int
    idempotency_key: str
    generation: int  # 0 for the first stop; +1 for each deliberate re-application
    requested_at: datetime
    supplement: SupplementOf | None = None
    # A known mule (`stopper.domain.mules`): the cases naming the account, this one included,
    # counted up to `CASES_COUNTED`, as Stopper knew when the request was claimed; 0 otherwise.
    mule_cases: int = 0


@dataclass(frozen=True, slots=True)
class OrderFreeze:
    """A formal freeze (or its renewal) is owed to `institution_code` for one stopped hold, on
    the strength of `legal_document_ref`."""

    hold_id: UUID
    case_id: UUID
    institution_code: str
    account_number: str
    currency: str
    amount: int  # what the stop holds
    legal_document_ref: str
    idempotency_key: str
    renewal: bool
    requested_at: datetime


@dataclass(frozen=True, slots=True)
class ReturnPayout:
    """Pay `amount` of a hold's frozen funds to one victim's own account."""

    victim_ref: str
    institution_code: str
    account_number: str
    amount: int


@dataclass(frozen=True, slots=True)
class OrderReturn:
    """Frozen funds of one hold are owed back to the victims: `payouts`, `amount` in all."""

    hold_id: UUID
    case_id: UUID
    institution_code: str
    account_number: str
    currency: str
    amount: int
    legal_document_ref: str
    payouts: tuple[ReturnPayout, ...]
    idempotency_key: str
    requested_at: datetime


@dataclass(frozen=True, slots=True)
class OrderRelease:
    """A hold is to be lifted at `institution_code` (`ground`: report_withdrawn or
    account_cleared): its stop, of whatever generation up to `generation`, released, and none
    of its stop requests still to arrive carried out."""

    hold_id: UUID
    case_id: UUID
    institution_code: str
    account_number: str
    currency: str
    ground: str
    generation: int
    idempotency_key: str
    requested_at: datetime


@dataclass(frozen=True, slots=True)
class CaseOpened:
    case_id: UUID
    report_id: str
    agency_code: str
    hold_count: int
    opened_at: datetime


@dataclass(frozen=True, slots=True)
class HoldRequested:
    hold_id: UUID
    case_id: UUID
    institution_code: str
    layer: int
    amount: int
    currency: str


DomainEvent = CaseOpened | HoldRequested


class AnswerKind(enum.StrEnum):
    """What an institution can answer to a stop request."""

    STOPPED = "stopped"
    NOT_FOUND = "not_found"
    REJECTED = "rejected"
    ACCEPTED = "accepted"  # taken; the outcome follows by callback


class OnwardKind(enum.StrEnum):
    TRANSFER = "transfer"
    CASH_WITHDRAWAL = "cash_withdrawal"


@dataclass(frozen=True, slots=True)
class OnwardTransfer:
    """Money that left the stopped account before the stop: where to, how much, when."""

    kind: OnwardKind
    amount: int
    transferred_at: datetime
    institution_code: str | None = None
    account_number: str | None = None


@dataclass(frozen=True, slots=True)
class InstitutionAnswer:
    kind: AnswerKind
    amount_held: int | None = None
    reason: str | None = None
    onward: tuple[OnwardTransfer, ...] = ()


@dataclass(frozen=True, slots=True)
class OrderAnswer:
    """An institution's answer to an order about a hold (a formal freeze, a return, a release):
    done, with the amount it acted on, or refused and why."""

    done: bool
    amount: int = 0
    reason: str | None = None


class StatusKind(enum.StrEnum):
    """What an institution's record of one stop request says, asked by its idempotency key."""

    ANSWERED = "answered"  # it has an outcome: `StopStatus.answer`
    PENDING = "pending"  # it has the request and owes the outcome
    UNKNOWN = "unknown"  # it never received the request: only then is it sent again
    # It carried the stop out, and the stop no longer stands there (released, or lifted on the
    # institution's own decision): what a re-verification of a stopped hold may find.
    LIFTED = "lifted"


@dataclass(frozen=True, slots=True)
class StopStatus:
    """The answer to a status inquiry about one stop request."""

    idempotency_key: str
    kind: StatusKind
    hold_id: UUID | None = None
    answer: InstitutionAnswer | None = None  # with ANSWERED: stopped, not_found or rejected
