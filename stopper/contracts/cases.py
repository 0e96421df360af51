"""What case queries answer (version 1). Account numbers appear masked only."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from stopper.contracts.accounts import LinkedCasesV1
from stopper.contracts.amounts import DecimalAmount

Operator = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9._:@-]+$",
        description="The operator acting (recorded in the audit trail).",
    ),
]


def to_major(minor: int) -> Decimal:
    """Minor units (what Stopper counts in) as the wire's amounts: major units, two decimals."""
    return (Decimal(minor) / 100).quantize(Decimal("0.01"))


class HoldV1(BaseModel):
    hold_id: UUID
    institution_code: str
    account: str = Field(description="Masked account number: only the last 4 characters.")
    state: str
    layer: int
    parent_hold_id: UUID | None
    currency: str
    amount_asked: DecimalAmount
    amount_stopped: DecimalAmount
    amount_frozen: DecimalAmount
    amount_returned: DecimalAmount
    updated_at: datetime


class PayoutV1(BaseModel):
    """One victim's share of one hold's return."""

    hold_id: UUID
    round: int = Field(description="1 for the hold's first return order; more after a refusal.")
    victim_ref: str
    currency: str
    amount: DecimalAmount
    account: str = Field(description="The victim's own account, masked.")
    status: str = Field(description="pending, paid or cancelled (the institution refused).")


class CaseV1(BaseModel):
    case_id: UUID
    report_id: str
    agency_code: str
    reported_at: datetime
    accepted_at: datetime
    opened_at: datetime
    victims: int
    transfers: int
    holds_by_state: dict[str, int]
    holds: list[HoldV1]
    payouts: list[PayoutV1] = Field(description="Returns to the victims, in the order made.")
    linked_cases: LinkedCasesV1 = Field(
        description="Cases naming an account this one names (the mule-account registry)."
    )


class TrailEdgeV1(BaseModel):
    from_hold_id: UUID
    to_hold_id: UUID | None = Field(description="The hold that follows it; none if not followed.")
    kind: str = Field(description="transfer or cash_withdrawal")
    institution_code: str | None
    account: str | None = Field(description="Masked account number.")
    amount: DecimalAmount = Field(description="What the institution reported moving.")
    amount_traced: DecimalAmount = Field(description="What the trail followed (capped).")
    transferred_at: datetime
    outcome: str = Field(
        description="followed, merged, cycle, depth_limit, unrecoverable, unknown_institution "
        "or nothing_left"
    )


class TrailLayerV1(BaseModel):
    layer: int
    holds: int
    amount_asked: DecimalAmount
    amount_stopped: DecimalAmount


class TrailV1(BaseModel):
    """The case's holds as a graph: layer 1 are the accounts the victims paid; each edge is an
    onward transfer an institution reported."""

    case_id: UUID
    layers: list[TrailLayerV1]
    holds: list[HoldV1]
    edges: list[TrailEdgeV1]
    unrecoverable: DecimalAmount = Field(description="Traced money that left as cash.")


class ReapplyV1(BaseModel):
    model_config = ConfigDict(extra="forbid")

    requested_by: Operator
    reason: str = Field(min_length=1, max_length=500)


class ReapplyAcceptedV1(BaseModel):
    hold_id: UUID
    state: str


DocumentRef = Annotated[
    str,
    Field(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9 ./:_()-]*$",
        description="Reference of the legal document the order rests on.",
    ),
]


class FreezeOrderV1(BaseModel):
    model_config = ConfigDict(extra="forbid")

    legal_document_ref: DocumentRef
    requested_by: Operator


class FreezeOrderedV1(BaseModel):
    hold_id: UUID
    legal_document_ref: str
    approval: Literal["none", "pending"] = Field(
        default="none",
        description="pending: freezes need a second operator (STOPPER_APPROVALS_FREEZES); "
        "the order waits at /v1/freeze-orders/{order_id}.",
    )
    order_id: UUID | None = None


class ReturnOrderV1(BaseModel):
    model_config = ConfigDict(extra="forbid")

    legal_document_ref: DocumentRef
    requested_by: Operator
    hold_ids: list[UUID] | None = Field(
        default=None,
        max_length=1000,
        description="Only these holds of the case; all its frozen holds when left out.",
    )


class PayoutOrderedV1(BaseModel):
    victim_ref: str
    amount: DecimalAmount
    account: str = Field(description="The victim's own account, masked.")


class ReturnStartedV1(BaseModel):
    hold_id: UUID
    currency: str
    amount: DecimalAmount = Field(description="What goes back to the victims from this hold.")
    unallocated: DecimalAmount = Field(
        description="Frozen beyond what the victims are owed: stays for a person to decide on."
    )
    resent: bool = Field(description="An earlier return whose outcome was unknown, sent again.")
    payouts: list[PayoutOrderedV1]


class SkippedHoldV1(BaseModel):
    hold_id: UUID
    reason: str


class ReturnsOrderedV1(BaseModel):
    """Returns on their way: each hold is `returning` until its institution confirms."""

    case_id: UUID
    returns: list[ReturnStartedV1]
    skipped: list[SkippedHoldV1]


class HandledV1(BaseModel):
    """A person dealt with a failed or unconfirmed hold (e.g. phoned its institution)."""

    model_config = ConfigDict(extra="forbid")

    requested_by: Operator
    note: str = Field(
        min_length=1, max_length=2000, description="What was done; kept in the audit."
    )


class HandledRecordedV1(BaseModel):
    hold_id: UUID
    handled: bool = True
