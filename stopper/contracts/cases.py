"""What case queries answer (version 1). Account numbers appear masked only."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from uuid import UUID

from pydantic import BaseModel, Field

from stopper.app.views import CaseView


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
            holds=[
                HoldV1(
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
                for h in view.holds
            ],
        )
