"""What case queries answer (version 1). Account numbers appear masked only."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from stopper.app.views import CaseView, HoldView, TrailView

Operator = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9._:@-]+$",
        description="The operator acting (recorded in the audit trail).",
    ),
]


def _major(minor: int) -> Decimal:
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


def _hold(h: HoldView) -> HoldV1:
    return HoldV1(
        hold_id=h.hold_id,
        institution_code=h.institution_code,
        account=h.account_masked,
        state=h.state,
        layer=h.layer,
        parent_hold_id=h.parent_hold_id,
        currency=h.currency,
        amount_asked=_major(h.amount_asked),
        amount_stopped=_major(h.amount_stopped),
        amount_frozen=_major(h.amount_frozen),
        amount_returned=_major(h.amount_returned),
        updated_at=h.updated_at,
    )


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
            holds=[_hold(h) for h in view.holds],
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
                    amount_asked=_major(sum(h.amount_asked for h in holds)),
                    amount_stopped=_major(sum(h.amount_stopped for h in holds)),
                )
                for layer, holds in sorted(layers.items())
            ],
            holds=[_hold(h) for h in view.holds],
            edges=[
                TrailEdgeV1(
                    from_hold_id=e.from_hold_id,
                    to_hold_id=e.to_hold_id,
                    kind=e.kind,
                    institution_code=e.institution_code,
                    account=e.account_masked,
                    amount=_major(e.amount),
                    amount_traced=_major(e.amount_traced),
                    transferred_at=e.transferred_at,
                    outcome=e.outcome,
                )
                for e in view.edges
            ],
            unrecoverable=_major(
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


class FreezeOrderV1(BaseModel):
    model_config = ConfigDict(extra="forbid")

    legal_document_ref: str = Field(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9 ./:_()-]*$",
        description="Reference of the legal document the freeze rests on.",
    )
    requested_by: Operator


class FreezeOrderedV1(BaseModel):
    hold_id: UUID
    legal_document_ref: str
