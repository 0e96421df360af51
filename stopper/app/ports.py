"""The ports the use cases depend on.

Adapters implement them; the use cases never import adapters.
"""

from __future__ import annotations

import enum
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Literal, Protocol
from uuid import UUID

from stopper.app.hold_changes import HoldChange
from stopper.domain.cases import Case
from stopper.domain.holds import Hold, HoldState, Transition
from stopper.domain.messages import (
    InstitutionAnswer,
    OrderAnswer,
    OrderFreeze,
    OrderRelease,
    OrderReturn,
    RequestStop,
    StopStatus,
)
from stopper.domain.returns import FlowEdge
from stopper.domain.trail import TrailNode, TrailPlan
from stopper.registry import Institution


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware (UTC)."""
        ...


@dataclass(frozen=True, slots=True)
class Message:
    """One record read from a topic, as every bus hands it over."""

    topic: str
    partition: int
    offset: int
    key: str | None
    value: bytes
    timestamp: datetime
    headers: Mapping[str, str] = field(default_factory=dict)


class Publisher(Protocol):
    async def publish(
        self, topic: str, key: str | None, value: bytes, headers: Mapping[str, str] | None = None
    ) -> None:
        """Return once the bus has the record; raise `BusUnavailable` if it could not take it."""
        ...


class Subscription(Protocol):
    """A consumer-group membership. Nothing is committed unless `commit` is called."""

    async def next_batch(self) -> Sequence[Message]:
        """The next records, possibly none after a short wait."""
        ...

    async def commit(self, batch: Sequence[Message]) -> None:
        """Mark every record of `batch` as done for the group."""
        ...

    def lag(self) -> int | None:
        """Records on this member's partitions not yet handed out (None: not known yet)."""
        ...

    async def close(self) -> None: ...


class Bus(Publisher, Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def subscribe(
        self, topic: str, group: str, fetch_max_wait_ms: int | None = None
    ) -> Subscription:
        """A membership of `group` on `topic`. `fetch_max_wait_ms`: how long a fetch may wait
        for records on a broker that has them (default: the bus's setting); buses that are not
        polled ignore it."""
        ...

    async def ready(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class VictimRecord:
    victim_ref: str
    name: str | None


@dataclass(frozen=True, slots=True)
class OpenedCase:
    """A case to record, with everything that must commit with it."""

    case: Case
    births: Sequence[Transition]
    stop_requests: Sequence[RequestStop]
    victims: Sequence[VictimRecord]
    fingerprint: str
    accepted_at: datetime
    source: str  # "http" or "kafka": where the report came in


@dataclass(frozen=True, slots=True)
class RecordOutcome:
    """What the store did with a batch: ids it created, and fingerprints of ids it already had."""

    created: Sequence[UUID]
    already_known: Mapping[UUID, str]
    # With a `claim` decision: each new hold it claimed, as it was born and what the claim did.
    claimed: Sequence[tuple[HoldRecord, HoldUpdate]] = ()
    # New holds on known mule accounts, by hold: the cases naming it as the write saw them.
    mule_cases: Mapping[UUID, int] = field(default_factory=dict)


class IntakeStore(Protocol):
    """Intake's storage (`IntakeHandler`)."""

    async def record_opened_cases(
        self, cases: Sequence[OpenedCase], claim: HoldDecision | None = None
    ) -> RecordOutcome:
        """In one transaction: cases, victims, transfers, accounts, holds and their birth
        transitions. Cases that already exist are left untouched. `claim` is decided on each
        new hold (as `HoldRecord.born`) in the same transaction, and what it changes is written
        with the hold: a first stop request claimed without a transaction of its own. Which
        new holds are on known mule accounts is read by the same write (another writer's
        case committed meanwhile is not counted there; it flags the account once both are in)."""
        ...


@dataclass(slots=True)
class HoldRecord:
    """A hold as stored, with its dispatch bookkeeping; `hold` is the domain object to change."""

    hold: Hold
    attempts: int
    report_accepted_at: datetime | None
    requested_at: datetime
    next_attempt_at: datetime | None
    dispatch_deadline_at: datetime | None
    sent_at: datetime | None
    confirmed_at: datetime | None
    stop_expires_at: datetime | None
    state_reason: str | None
    warnings_sent: int = 0
    freeze_expires_at: datetime | None = None
    freeze_document_ref: str | None = None
    freeze_attempts: int = 0
    freeze_next_attempt_at: datetime | None = None
    return_document_ref: str | None = None
    return_round: int = 0  # how many returns were ordered for this hold (one key per round)
    return_attempts: int = 0
    return_next_attempt_at: datetime | None = None
    accepted_at: datetime | None = None  # the institution accepted the request (unconfirmed)
    inquiries: int = 0  # status inquiries made about it since
    release_ground: str | None = None  # why it is released: report_withdrawn, account_cleared
    release_attempts: int = 0
    release_next_attempt_at: datetime | None = None

    @classmethod
    def born(
        cls, hold: Hold, *, requested_at: datetime, report_accepted_at: datetime | None
    ) -> HoldRecord:
        """A hold as intake stores it: requested, never attempted."""
        return cls(
            hold=hold,
            attempts=0,
            report_accepted_at=report_accepted_at,
            requested_at=requested_at,
            next_attempt_at=None,
            dispatch_deadline_at=None,
            sent_at=None,
            confirmed_at=None,
            stop_expires_at=None,
            state_reason=None,
        )

    def copy(self) -> HoldRecord:
        """A copy sharing the domain hold, for a change to set its fields on: a fifth of the
        cost of `dataclasses.replace`, which every hold's every change paid."""
        return HoldRecord(*_record_fields(self))


_record_fields = operator.attrgetter(*(f.name for f in fields(HoldRecord)))


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    topic: str
    key: str
    payload: Mapping[str, object]


@dataclass(frozen=True, slots=True)
class HoldUpdate:
    """What a decision changes: the transitions it made on `HoldRecord.hold`, and what it sets
    on the record's bookkeeping (`change`, one of `stopper.app.hold_changes`)."""

    at: datetime
    transitions: Sequence[Transition] = ()
    change: HoldChange | None = None
    # Follow the money trail in the same transaction: given the case's holds, what to add.
    follow: Callable[[Sequence[TrailNode]], TrailPlan] | None = None
    # Messages for other systems, leaving through the outbox with this change.
    events: Sequence[OutboxEvent] = ()
    # The hold's pending payouts (of its current return round) become paid or cancelled.
    settle_payouts: Literal["paid", "cancelled"] | None = None

    def applied(self, record: HoldRecord) -> HoldRecord:
        """`record` as this update leaves it (a copy if `change` sets anything)."""
        return record if self.change is None else self.change.apply(record)


HoldDecision = Callable[[HoldRecord], HoldUpdate | None]


@dataclass(frozen=True, slots=True)
class CallbackNonce:
    """The nonce of a signed callback: accepted once per institution."""

    institution_code: str
    nonce: str
    received_at: datetime


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    id: int
    topic: str
    key: str | None
    payload: Mapping[str, object]
    headers: Mapping[str, str]


# The store's ports, one per use case, each asking for what its use case uses. They share the
# hold's unit of work; `stopper.adapters.db.SqlStore` (and the unit fake) implements them all.


class HoldUnitOfWork(Protocol):
    """One message, one unit of work: holds loaded locked, decided on, written once."""

    async def update_hold(
        self, hold_id: UUID, decide: HoldDecision
    ) -> tuple[HoldRecord, HoldUpdate] | None:
        """Load the hold, let `decide` change it, and write the change only if nobody else
        changed the hold meanwhile (retrying `decide` on a fresh copy if they did). None: no such
        hold, or `decide` chose to change nothing."""
        ...

    async def update_holds(
        self,
        decisions: Mapping[UUID, HoldDecision],
        nonces: Mapping[UUID, CallbackNonce] | None = None,
        replayed: set[UUID] | None = None,
    ) -> list[tuple[HoldRecord, HoldUpdate]]:
        """`update_hold` for many holds (each with its own decision) in one transaction, the
        holds locked while they are decided and written: claims of a consumer batch, answers
        that arrived together, sweeps. Returns the changes written; a hold that does not exist
        or whose decision changed nothing is absent. A decision that came with a callback's
        nonce (`nonces`, by hold) runs only if the nonce is new, remembered in the same
        transaction; the holds whose nonce was used before are added to `replayed`."""
        ...


class DispatchStore(HoldUnitOfWork, Protocol):
    """The dispatcher's storage (`Dispatcher`): stop requests' attempts and their leases."""

    async def due_holds(self, now: datetime, requested_before: datetime, limit: int) -> list[UUID]:
        """Holds whose next attempt is due: `sent` past `next_attempt_at` (a retry or a lapsed
        lease), `unconfirmed` past it (a status inquiry), and `requested` ones no consumer
        picked up since `requested_before`. Of the longest due (a few sweeps' worth), known
        mules first."""
        ...

    async def renew_leases(self, claims: Mapping[UUID, int], until: datetime) -> list[UUID]:
        """Move to `until` the lease (`next_attempt_at`) of each hold still `sent` on the
        attempt given for it (hold -> attempt) whose lease ends sooner; rows another
        transaction holds are skipped (it is writing their outcome). Returns those renewed."""
        ...

    async def mule_cases(self, hold_ids: Sequence[UUID]) -> dict[UUID, int]:
        """The holds among `hold_ids` on a known mule account, with the cases naming it
        (counted up to `CASES_COUNTED`)."""
        ...


class DeadlineStore(HoldUnitOfWork, Protocol):
    """The deadline keeper's storage (`DeadlineKeeper`): lapses, warnings, re-applications."""

    async def holds_near_deadline(
        self,
        now: datetime,
        stop_leads: Sequence[timedelta],
        freeze_leads: Sequence[timedelta],
        limit: int,
    ) -> list[UUID]:
        """Stopped or frozen holds owed a lapse warning (by `warnings_sent` and the leads,
        longest first) or past their deadline, the soonest deadline first."""
        ...

    async def count_expiring(self, now: datetime, within: timedelta) -> int:
        """Stopped holds whose stop lapses before `now + within`."""
        ...


class FreezeStore(HoldUnitOfWork, Protocol):
    """The freeze desk's storage (`FreezeDesk`)."""

    async def freezes_due(self, now: datetime, limit: int) -> list[UUID]:
        """Holds with a freeze order whose next attempt is due."""
        ...


class ReleaseStore(HoldUnitOfWork, Protocol):
    """The release desk's storage (`ReleaseDesk`)."""

    async def releases_due(self, now: datetime, limit: int) -> list[UUID]:
        """Releasing holds whose next release attempt is due."""
        ...

    async def case_hold_ids(self, case_id: UUID) -> list[UUID] | None:
        """Every hold of the case, the trail's too (None: no such case)."""
        ...


@dataclass(frozen=True, slots=True)
class ReconcileItem:
    """A hold whose outcome Stopper does not know, and the key its request was sent with."""

    hold_id: UUID
    idempotency_key: str
    state: HoldState


@dataclass(frozen=True, slots=True)
class Divergence:
    """Reconciliation (or a re-verification: `found_by`) found Stopper's state for a hold
    different from its institution's record (and moved the hold to the institution's truth
    where the table allows it)."""

    hold_id: UUID
    institution_code: str
    stopper_state: str
    institution_status: str
    found_at: datetime
    found_by: str = "reconciliation"  # or "reverification"


class ReconcileStore(Protocol):
    """Reconciliation's storage (`Reconciler`); it moves holds through the dispatcher."""

    async def holds_to_reconcile(
        self, institution_code: str, accepted_before: datetime, limit: int
    ) -> list[ReconcileItem]:
        """The institution's unconfirmed holds accepted before `accepted_before`, and its
        failed holds whose request was sent; then their supplements in the same plight (each
        by its own key and state)."""
        ...

    async def record_divergence(self, divergence: Divergence) -> None: ...


@dataclass(frozen=True, slots=True)
class HoldNote:
    """A person's note on a hold, kept in its audit beside the transitions; no state moves."""

    hold_id: UUID
    kind: str  # "handled": a person dealt with a hold Stopper could not
    note: str
    actor: str
    at: datetime


class NoteRecorded(enum.Enum):
    RECORDED = "recorded"
    NO_HOLD = "no_hold"
    NOT_IN_STATE = "not_in_state"


class NoteStore(Protocol):
    async def record_note(self, note: HoldNote, *, while_in: frozenset[HoldState]) -> NoteRecorded:
        """Record `note` if the hold is in one of `while_in` (read locked, in one transaction
        with the note, so a state change racing it is ordered before or after)."""
        ...


@dataclass(frozen=True, slots=True)
class VictimTransfer:
    """What one transfer record says about a victim's money: into which first-level hold, from
    which of the victim's accounts."""

    victim_ref: str
    hold_id: UUID
    currency: str
    amount: int
    institution_code: str
    account_number: str


@dataclass(frozen=True, slots=True)
class Payout:
    """One victim's share of one hold's return, to the victim's own account."""

    hold_id: UUID
    round: int
    victim_ref: str
    currency: str
    amount: int
    institution_code: str
    account_number: str
    status: Literal["pending", "paid", "cancelled"] = "pending"


@dataclass(frozen=True, slots=True)
class CaseFunds:
    """Everything a return order for a case decides on, read in one transaction."""

    holds: Sequence[HoldRecord]
    transfers: Sequence[VictimTransfer]
    edges: Sequence[FlowEdge]  # the trail's followed and merged onward transfers
    payouts: Sequence[Payout]  # earlier returns' payouts, cancelled ones included


@dataclass(frozen=True, slots=True)
class ReturnStart:
    """One hold a return order moves, with the payouts it owes."""

    hold_id: UUID
    version: int  # the version `update` was decided on
    update: HoldUpdate
    payouts: Sequence[Payout]


class ReturnStore(HoldUnitOfWork, Protocol):
    """The return desk's storage (`ReturnDesk`)."""

    async def start_returns(
        self, case_id: UUID, decide: Callable[[CaseFunds], Sequence[ReturnStart]]
    ) -> Sequence[ReturnStart] | None:
        """In one transaction, with the case locked: read its funds, let `decide` choose, write
        the hold changes and payouts. None: no such case. Retries `decide` if a hold changed
        under it."""
        ...

    async def payouts_of(self, hold_id: UUID, round: int) -> list[Payout]: ...

    async def returns_due(self, now: datetime, limit: int) -> list[UUID]:
        """Returning holds whose next return attempt is due."""
        ...


class InstitutionAdapter(Protocol):
    """One institution's side of Stopper, in the domain's terms: each method takes a domain
    command, makes one request (bounded by the institution's timeout, never retried) and returns
    the domain's reading of the answer; the wire format is the adapter's. Use cases call it
    through `InstitutionGateway` (slots, breaker, retries, metrics)."""

    async def request_stop(
        self, institution: Institution, request: RequestStop
    ) -> InstitutionAnswer:
        """One attempt within the institution's timeout; `InstitutionError` when it gives no
        usable answer (its `retryable` says whether asking again may help)."""
        ...

    async def stop_status(self, institution: Institution, idempotency_key: str) -> StopStatus:
        """What the institution's record says of one stop request (a status inquiry), errors as
        for `request_stop`."""
        ...

    async def stop_statuses(
        self, institution: Institution, idempotency_keys: Sequence[str]
    ) -> list[StopStatus]:
        """The institution's record of many stop requests in one request (reconciliation), one
        entry per key; errors as for `request_stop`."""
        ...

    async def request_freeze(self, institution: Institution, request: OrderFreeze) -> OrderAnswer:
        """One freeze attempt, errors as for `request_stop`."""
        ...

    async def request_return(self, institution: Institution, request: OrderReturn) -> OrderAnswer:
        """One return attempt (the payouts to the victims' accounts), errors as for stops."""
        ...

    async def request_release(self, institution: Institution, request: OrderRelease) -> OrderAnswer:
        """One release attempt (lift the hold's stop, carry out none of its requests still to
        come), errors as for stops."""
        ...
