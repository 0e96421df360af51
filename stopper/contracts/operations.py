"""What operators' queries answer (version 1): lists of cases and holds, institution health.
Account numbers appear masked only."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, Field

from stopper.contracts.amounts import DecimalAmount
from stopper.contracts.cases import HoldV1

BREAKER_STATES = ("closed", "half_open", "open")


class CaseSummaryV1(BaseModel):
    case_id: UUID
    report_id: str
    agency_code: str
    opened_at: datetime
    holds_by_state: dict[str, int]
    amount_reported: dict[str, DecimalAmount] = Field(
        description="What the victims lost, by currency."
    )
    amount_stopped: dict[str, DecimalAmount]
    next_lapse_at: datetime | None = Field(
        description="The earliest moment a stop of this case lapses unless frozen."
    )
    needs_person: int = Field(description="Holds failed: a person must act.")


class CaseListV1(BaseModel):
    cases: list[CaseSummaryV1]


class HoldListItemV1(HoldV1):
    case_id: UUID
    state_reason: str | None = Field(description="Why it is in this state, when it matters.")
    expires_at: datetime | None = Field(
        description="A stopped hold's lapse, or a frozen hold's freeze expiry."
    )


class HoldListV1(BaseModel):
    holds: list[HoldListItemV1]


class InstitutionStatusV1(BaseModel):
    code: str
    name: str
    kind: str
    breaker: Literal["closed", "half_open", "open"] = Field(
        description="The worst state any instance's breaker is in."
    )
    attempts: int = Field(description="Stop attempts in the last 5 minutes, all instances.")
    failures: int = Field(description="Of those: timeouts, errors, unreadable answers, refusals.")
    error_rate: float | None = Field(description="failures / attempts; none without attempts.")
    latency_p95_ms: float | None = Field(description="p95 of answered attempts (slowest instance).")
    instances: int = Field(description="Instances that reported on it in the last minute.")
    updated_at: datetime | None


class InstitutionStatusListV1(BaseModel):
    institutions: list[InstitutionStatusV1]


class ReconcileV1(BaseModel):
    """`POST /v1/reconciliations`: ask the institutions now (all, or the one named)."""

    institution: str | None = Field(default=None, description="An institution code; all if absent.")


class ReconciliationV1(BaseModel):
    """What one reconciliation pass found: per institution, the holds asked about by outcome
    (applied = Stopper had diverged and was moved to the institution's record)."""

    outcomes: dict[str, dict[str, int]]
    total: dict[str, int]
    unreachable: dict[str, str] = Field(description="Institutions that could not be asked: why.")


class DivergenceV1(BaseModel):
    hold_id: UUID
    institution_code: str
    stopper_state: str = Field(description="What Stopper said before reconciliation.")
    institution_status: str = Field(description="What the institution's record said.")
    found_at: datetime
    found_by: str = Field(
        default="reconciliation", description="reconciliation, or reverification."
    )


class DivergenceListV1(BaseModel):
    divergences: list[DivergenceV1]
