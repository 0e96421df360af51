"""What case queries answer (version 1). Account numbers appear masked only."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from stopper.app.returns import ReturnOrderResult
from stopper.app.views import CaseView, HoldView, TrailView
from stopper.domain.accounts import mask_account_number

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
    return (Decimal(minor) / 100).quantize(Decimal("0.01"))


class HoldV1(BaseModel):
    hold_id: UUID
    institution_code: str
    account: str = Field(description="Masked account number: only the last 4 characters.")
    state: str
    layer: int
    parent_hold_id: UUID | None
    currency: str
    amount_asked: Decimal
    amount_stopped: Decimal
    amount_frozen: Decimal
    amount_returned: Decimal
    updated_at: datetime


def hold_v1(h: HoldView) -> HoldV1:
    return HoldV1(
        hold_id=h.hold_id,
        institution_code=h.institution_code,
        account=h.account_masked,
        state=h.state,
        layer=h.layer,
        parent_hold_id=h.parent_hold_id,
        currency=h.currency,
        amount_asked=to_major(h.amount_asked),
        amount_stopped=to_major(h.amount_stopped),
        amount_frozen=to_major(h.amount_frozen),
        amount_returned=to_major(h.amount_returned),
        updated_at=h.updated_at,
    )


class PayoutV1(BaseModel):
    """One victim's share of one hold's return."""

    hold_id: UUID
    round: int = Field(description="1 for the hold's first return order; more after a refusal.")
    victim_ref: str
    currency: str
    amount: Decimal
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

    @classmethod
    def from_view(cls, view: CaseView) -> CaseV1:
        by_state: dict[str, int] = {}
        for hold in view.holds:
            by_state[hold.state] = by_state.get(hold.state, 0) + 1
        return cls(
            case_id=view.case_id,
            report_id=view.report_id,
            agency_code=view.agency_code,
            reported_at=view.reported_at,
            accepted_at=view.accepted_at,
            opened_at=view.opened_at,
            victims=view.victim_count,
            transfers=view.transfer_count,
            holds_by_state=by_state,
            holds=[hold_v1(h) for h in view.holds],
            payouts=[
                PayoutV1(
                    hold_id=p.hold_id,
                    round=p.round,
                    victim_ref=p.victim_ref,
                    currency=p.currency,
                    amount=to_major(p.amount),
                    account=p.account_masked,
                    status=p.status,
                )
                for p in view.payouts
            ],
        )


class TrailEdgeV1(BaseModel):
    from_hold_id: UUID
    to_hold_id: UUID | None = Field(description="The hold that follows it; none if not followed.")
    kind: str = Field(description="transfer or cash_withdrawal")
    institution_code: str | None
    account: str | None = Field(description="Masked account number.")
    amount: Decimal = Field(description="What the institution reported moving.")
    amount_traced: Decimal = Field(description="What the trail followed (capped).")
    transferred_at: datetime
    outcome: str = Field(
        description="followed, merged, cycle, depth_limit, unrecoverable, unknown_institution "
        "or nothing_left"
    )


class TrailLayerV1(BaseModel):
    layer: int
    holds: int
    amount_asked: Decimal
    amount_stopped: Decimal


class TrailV1(BaseModel):
    """The case's holds as a graph: layer 1 are the accounts the victims paid; each edge is an
    onward transfer an institution reported."""

    case_id: UUID
    layers: list[TrailLayerV1]
    holds: list[HoldV1]
    edges: list[TrailEdgeV1]
    unrecoverable: Decimal = Field(description="Traced money that left as cash.")

    @classmethod
    def from_view(cls, view: TrailView) -> TrailV1:
        layers: dict[int, list[HoldView]] = {}
        for hold in view.holds:
            layers.setdefault(hold.layer, []).append(hold)
        return cls(
            case_id=view.case_id,
            layers=[
                TrailLayerV1(
                    layer=layer,
                    holds=len(holds),
                    amount_asked=to_major(sum(h.amount_asked for h in holds)),
                    amount_stopped=to_major(sum(h.amount_stopped for h in holds)),
                )
                for layer, holds in sorted(layers.items())
            ],
            holds=[hold_v1(h) for h in view.holds],
            edges=[
                TrailEdgeV1(
                    from_hold_id=e.from_hold_id,
                    to_hold_id=e.to_hold_id,
                    kind=e.kind,
                    institution_code=e.institution_code,
                    account=e.account_masked,
                    amount=to_major(e.amount),
                    amount_traced=to_major(e.amount_traced),
                    transferred_at=e.transferred_at,
                    outcome=e.outcome,
                )
                for e in view.edges
            ],
            unrecoverable=to_major(
                sum(e.amount_traced for e in view.edges if e.outcome == "unrecoverable")
            ),
        )


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
    amount: Decimal
    account: str = Field(description="The victim's own account, masked.")


class ReturnStartedV1(BaseModel):
    hold_id: UUID
    currency: str
    amount: Decimal = Field(description="What goes back to the victims from this hold.")
    unallocated: Decimal = Field(
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

    @classmethod
    def from_result(cls, case_id: UUID, result: ReturnOrderResult) -> ReturnsOrderedV1:
        return cls(
            case_id=case_id,
            returns=[
                ReturnStartedV1(
                    hold_id=r.hold_id,
                    currency=r.currency,
                    amount=to_major(r.amount),
                    unallocated=to_major(r.unallocated),
                    resent=r.resent,
                    payouts=[
                        PayoutOrderedV1(
                            victim_ref=p.victim_ref,
                            amount=to_major(p.amount),
                            account=mask_account_number(p.account_number),
                        )
                        for p in r.payouts
                    ],
                )
                for r in result.started
            ],
            skipped=[SkippedHoldV1(hold_id=h, reason=why) for h, why in result.skipped.items()],
        )
