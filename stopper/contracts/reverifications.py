"""Re-verification jobs (version 1): `POST /v1/reverifications` and what `GET` answers."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, Field


class ReverifyV1(BaseModel):
    """Ask the institutions again about every stopped first-level hold (of one institution)."""

    institution: str | None = Field(default=None, description="An institution code; all if absent.")
    requested_by: str = Field(
        default="operator",
        min_length=1,
        max_length=64,
        description="Who asks (the audit names the key's holder where keys are required).",
    )


class ReverificationV1(BaseModel):
    """One job and how far it got."""

    id: UUID
    institution: str | None = Field(description="The institution asked; null: every one.")
    state: Literal["running", "finished"]
    holds: int = Field(description="Stopped first-level holds in its scope when it started.")
    asked: int = Field(description="Holds whose institution was asked and answered.")
    confirmed: int = Field(description="Still stopped, holding what Stopper has.")
    diverged: int = Field(
        description="Divergences: stops no longer in force (moved to expired) and amounts "
        "that differ (left for a person); each in GET /v1/divergences."
    )
    unreachable: int = Field(description="Holds whose institution could not be asked.")
    remaining: int = Field(description="Holds still to ask about (0 once finished).")
    outcomes: dict[str, int] = Field(
        description="Holds by outcome: confirmed, lifted, amount_differs, moved (changed "
        "meanwhile), pending, unanswered, unreachable, or why a status was refused."
    )
    requested_by: str
    started_at: datetime
    updated_at: datetime
    finished_at: datetime | None


class ReverificationListV1(BaseModel):
    reverifications: list[ReverificationV1]


class ReverificationRunningV1(BaseModel):
    """409: a running job's scope overlaps the one asked for; it is the one to follow."""

    detail: str
    running: ReverificationV1
