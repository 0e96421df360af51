"""Messages between Stopper and the institutions (version 1)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from stopper.domain.messages import AnswerKind, InstitutionAnswer, RequestStop


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


class StopAnswerV1(BaseModel):
    """An institution's answer to a stop request: at once (HTTP 200) or `accepted` (HTTP 202)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    status: Literal["stopped", "not_found", "rejected", "accepted"]
    amount_held: int | None = Field(default=None, ge=0, description="Minor units actually held.")
    reason: Annotated[str, StringConstraints(max_length=500)] | None = None

    @model_validator(mode="after")
    def _stopped_says_how_much(self) -> StopAnswerV1:
        if self.status == "stopped" and self.amount_held is None:
            raise ValueError("a stopped answer must say amount_held")
        return self

    def to_domain(self) -> InstitutionAnswer:
        return InstitutionAnswer(AnswerKind(self.status), self.amount_held, self.reason)


class CallbackV1(BaseModel):
    """A signed callback: the later answer to a stop request the institution accepted."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    schema_version: Literal[1] = 1
    hold_id: UUID
    idempotency_key: Annotated[str, StringConstraints(max_length=128)]
    status: Literal["stopped", "not_found", "rejected"]
    amount_held: int | None = Field(default=None, ge=0)
    reason: Annotated[str, StringConstraints(max_length=500)] | None = None
    answered_at: datetime

    @model_validator(mode="after")
    def _stopped_says_how_much(self) -> CallbackV1:
        if self.status == "stopped" and self.amount_held is None:
            raise ValueError("a stopped answer must say amount_held")
        return self

    def to_domain(self) -> InstitutionAnswer:
        return InstitutionAnswer(AnswerKind(self.status), self.amount_held, self.reason)


class CallbackAcceptedV1(BaseModel):
    hold_id: UUID
    outcome: Literal["applied", "repeated"] = Field(
        description="applied: the hold moved; repeated: it already said this."
    )
