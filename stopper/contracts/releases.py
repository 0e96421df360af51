"""Releases (version 1): lifting a hold because its account was cleared, or every hold of a
case because its report was withdrawn. What was ordered, hold by hold."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from stopper.contracts.cases import Operator, SkippedHoldV1


class ReleaseV1(BaseModel):
    """Who asks for the release, and why (both kept in the audit)."""

    model_config = ConfigDict(extra="forbid")

    requested_by: Operator
    reason: str = Field(min_length=1, max_length=500)


class HoldReleaseV1(BaseModel):
    hold_id: UUID
    outcome: Literal["ordered", "cancelled", "already_ordered", "resent"] = Field(
        description="ordered: the release went to the institution (state releasing until it "
        "confirms); cancelled: the stop request had never left, the hold is released at once; "
        "already_ordered: a release is under way; resent: an earlier release that gave up, "
        "sent again."
    )
    state: str = Field(description="releasing, or released.")


class HoldReleasedV1(HoldReleaseV1):
    """The answer to `POST /v1/holds/{hold_id}/release`."""

    ground: Literal["account_cleared"] = "account_cleared"


class WithdrawnV1(BaseModel):
    """The answer to `POST /v1/cases/{case_id}/withdraw`: every hold of the case released or on
    its way to it, and those that could not be, with why."""

    case_id: UUID
    ground: Literal["report_withdrawn"] = "report_withdrawn"
    releases: list[HoldReleaseV1]
    skipped: list[SkippedHoldV1]
