"""Messages between Stopper and the institutions (version 1)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from stopper.domain.messages import RequestStop


class StopRequestV1(BaseModel):
    """Ask an institution for an emergency stop-payment on one account, for one hold."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = 1
    hold_id: UUID
    case_id: UUID
    institution_code: str
    account_number: str
    currency: str
    amount: int = Field(gt=0, description="Minor units (cents).")
    layer: int = Field(ge=1)
    idempotency_key: str
    requested_at: datetime

    @classmethod
    def from_command(cls, command: RequestStop) -> StopRequestV1:
        return cls(
            hold_id=command.hold_id,
            case_id=command.case_id,
            institution_code=command.institution_code,
            account_number=command.account_number,
            currency=command.currency,
            amount=command.amount,
            layer=command.layer,
            idempotency_key=command.idempotency_key,
            requested_at=command.requested_at,
        )
