"""Four eyes: orders waiting for a second operator, and the decisions on them (v1)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from stopper.contracts.cases import Operator, ReturnStartedV1, SkippedHoldV1


class ApproveV1(BaseModel):
    model_config = ConfigDict(extra="forbid")

    approved_by: Operator


class RejectV1(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rejected_by: Operator
    reason: str = Field(min_length=1, max_length=500, description="Why, for the audit.")


class SignatureV1(BaseModel):
    name: str = Field(description="The name given in the body (`requested_by`, ...).")
    person: str = Field(
        description="Who the call stands for: the key's holder, or, where keys are not "
        "required, the `X-Operator` header (`anonymous` without one). Compared for four eyes."
    )
    key_id: str | None = Field(description="The key used; null without a key.")


class ApprovalOrderV1(BaseModel):
    order_id: UUID
    kind: Literal["return", "freeze"]
    approval: Literal["pending", "approved", "rejected"]
    case_id: UUID
    hold_id: UUID | None = Field(default=None, description="A freeze order's hold.")
    hold_ids: list[UUID] | None = Field(
        default=None, description="A return order's chosen holds; null: all the case's frozen."
    )
    legal_document_ref: str
    requester: SignatureV1
    requested_at: datetime
    decider: SignatureV1 | None = None
    decided_at: datetime | None = None
    reason: str | None = Field(default=None, description="Why it was rejected.")


class ReturnOrderAnswerV1(ApprovalOrderV1):
    """A return order, with what it would do (pending: computed now, made again when approved)
    or what its approval did (approved)."""

    returns: list[ReturnStartedV1]
    skipped: list[SkippedHoldV1]


class ApprovalOrdersV1(BaseModel):
    orders: list[ApprovalOrderV1] = Field(description="Oldest first.")
