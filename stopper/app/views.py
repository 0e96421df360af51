"""Read models: what queries return. Account numbers here are already masked."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID


@dataclass(frozen=True, slots=True)
class HoldView:
    hold_id: UUID
    institution_code: str
    account_masked: str
    state: str
    layer: int
    currency: str
    amount_asked: int
    amount_stopped: int
    amount_frozen: int
    amount_returned: int
    parent_hold_id: UUID | None
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class PayoutView:
    hold_id: UUID
    round: int
    victim_ref: str
    currency: str
    amount: int
    account_masked: str
    status: str  # pending, paid or cancelled


@dataclass(frozen=True, slots=True)
class CaseView:
    case_id: UUID
    report_id: str
    agency_code: str
    reported_at: datetime
    accepted_at: datetime
    opened_at: datetime
    victim_count: int
    transfer_count: int
    holds: tuple[HoldView, ...]
    payouts: tuple[PayoutView, ...] = ()


@dataclass(frozen=True, slots=True)
class Overview:
    """The whole store at a glance (demo summary, operators)."""

    cases: int
    holds_by_state: dict[str, int]
    amount_asked_by_currency: dict[str, int]
    amount_stopped_by_currency: dict[str, int]
    outbox_pending: int
    attempts: int
    holds_by_layer: dict[int, tuple[int, int]]  # layer -> (holds, amount stopped)
    amount_returned_by_currency: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TrailEdgeView:
    from_hold_id: UUID
    to_hold_id: UUID | None
    kind: str
    institution_code: str | None
    account_masked: str | None
    amount: int
    amount_traced: int
    transferred_at: datetime
    outcome: str


@dataclass(frozen=True, slots=True)
class TrailView:
    case_id: UUID
    holds: tuple[HoldView, ...]
    edges: tuple[TrailEdgeView, ...]


@dataclass(frozen=True, slots=True)
class CaseSummaryView:
    case_id: UUID
    report_id: str
    agency_code: str
    opened_at: datetime
    holds_by_state: dict[str, int]
    amount_asked: dict[str, int]  # first-level asks by currency: what the victims lost
    amount_stopped: dict[str, int]
    next_lapse_at: datetime | None  # the earliest deadline of a stopped hold


@dataclass(frozen=True, slots=True)
class HoldListView:
    hold: HoldView
    case_id: UUID
    state_reason: str | None
    expires_at: datetime | None  # a stop's lapse, or a freeze's expiry


@dataclass(frozen=True, slots=True)
class InstitutionHealthView:
    institution_code: str
    instances: int  # instances that reported lately
    breaker_state: int  # the worst any instance sees
    attempts: int
    failures: int
    latency_p95_ms: float | None  # the slowest instance's
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class AuditEntryView:
    """One line of a case's timeline: a hold's transition, or a person's note on it (no
    state moved: `from_state` and `to_state` are both the hold's state then)."""

    at: datetime
    hold_id: UUID
    layer: int
    institution_code: str
    from_state: str | None
    to_state: str
    event: str | None  # the transition's event, or the note's kind ("handled")
    cause: str  # the transition's cause, or the note
    actor: str
    is_note: bool


@dataclass(frozen=True, slots=True)
class ActivityView:
    """The last hour and the day so far, as the console's summary band shows them."""

    reports: int  # cases opened since the hour began
    holds: int  # holds requested since then
    stopped_today: dict[str, int]  # by currency: amount stopped by holds confirmed today
    needing_a_person: int  # failed or unconfirmed holds nobody marked handled since
    # Each stop confirmed in the last hour: when, and the seconds from the report's acceptance.
    latencies: tuple[tuple[datetime, float], ...]


@dataclass(frozen=True, slots=True)
class AccountCaseView:
    """One case naming an account: its hold on it, reported (layer 1) or found by the trail."""

    case_id: UUID
    agency_code: str
    layer: int
    state: str
    named_at: datetime  # the hold's birth: when the case named the account


@dataclass(frozen=True, slots=True)
class AccountRecordView:
    """An account as the mule-account registry knows it, from the holds naming it."""

    institution_code: str
    account_masked: str
    cases: int  # the cases naming it (`stopper.domain.mules`): two or more is a known mule
    first_seen_at: datetime
    last_seen_at: datetime
    amount_stopped: dict[str, int]  # by currency, over all its holds
    recent_cases: tuple[AccountCaseView, ...]  # the newest first, a bounded number


@dataclass(frozen=True, slots=True)
class FlaggedAccountsView:
    """A page of the known mule accounts, the most recently named first."""

    accounts: tuple[AccountRecordView, ...]
    total: int  # known mule accounts in all


@dataclass(frozen=True, slots=True)
class SharedAccountView:
    institution_code: str
    account_masked: str


@dataclass(frozen=True, slots=True)
class LinkedCaseView:
    """Another case naming an account this case names."""

    case_id: UUID
    agency_code: str
    opened_at: datetime
    shared: tuple[SharedAccountView, ...]


@dataclass(frozen=True, slots=True)
class CaseLinksView:
    """A case's links through shared accounts: the cases that share one with it, and the ring
    (every case connected to it through shared accounts, however many steps away, itself
    included), as far as the bounded search went (`complete`: counts are exact)."""

    linked: tuple[LinkedCaseView, ...]  # newest first, a bounded number
    linked_total: int
    ring_size: int
    ring_case_ids: tuple[UUID, ...]  # the others, nearest first, a bounded number
    complete: bool
