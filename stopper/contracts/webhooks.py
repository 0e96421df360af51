"""Agencies' webhooks (version 1): a subscription asked for and answered, the list, the
delivery log, and the case event every delivery (and every record on `stopper.case-events`)
carries. Account numbers appear masked only; the secret is answered once, at creation."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field


class CaseEventType(enum.StrEnum):
    CASE_OPENED = "case_opened"
    HOLD_STOPPED = "hold_stopped"
    HOLD_NOT_FOUND = "hold_not_found"
    HOLD_REJECTED = "hold_rejected"
    HOLD_UNCONFIRMED = "hold_unconfirmed"
    HOLD_FAILED = "hold_failed"
    TRAIL_FOLLOWED = "trail_followed"
    STOP_EXPIRING = "stop_expiring"
    STOP_LAPSED = "stop_lapsed"
    HOLD_FROZEN = "hold_frozen"
    FUNDS_RETURNED = "funds_returned"
    # Told on every transition to `released` (`stopper.app.case_events.EVENT_OF_STATE`).
    HOLD_RELEASED = "hold_released"


DeliveryStatus = Literal["pending", "delivered", "gave_up"]


class WebhookRequestV1(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        min_length=8,
        max_length=2048,
        description="http(s) URL the events are POSTed to; redirects are not followed.",
    )
    events: list[CaseEventType] = Field(
        min_length=1, max_length=len(CaseEventType), description="The event types wanted."
    )


class WebhookCreatedV1(BaseModel):
    id: UUID
    secret: str = Field(
        description="HMAC-SHA256 key of X-Stopper-Signature; shown only in this answer."
    )


class WebhookSecretV1(BaseModel):
    id: UUID
    secret: str = Field(description="The new HMAC-SHA256 key; shown only in this answer.")
    previous_valid_until: datetime = Field(
        description="Until then (or until the rotation is ended) each delivery carries two "
        "signatures in X-Stopper-Signature, `sha256=<by the new secret>, sha256=<by the old>`: "
        "accept a delivery when either verifies."
    )


class WebhookV1(BaseModel):
    id: UUID
    agency_code: str
    url: str
    events: list[CaseEventType]
    created_at: datetime
    rotating_until: datetime | None = Field(
        default=None,
        description="A secret rotation under way: the previous secret signs too until then.",
    )


class WebhookListV1(BaseModel):
    webhooks: list[WebhookV1]


class DeliveryAttemptV1(BaseModel):
    event_id: UUID
    event_type: CaseEventType
    case_id: UUID
    attempt: int = Field(description="1 for the first try of this event.")
    at: datetime
    outcome: str = Field(
        description="delivered, http_error, redirect (not followed), timeout, unreachable, error"
    )
    status_code: int | None
    detail: str
    duration_ms: float
    delivery_status: DeliveryStatus = Field(description="Where this event's delivery is now.")


class DeliveryLogV1(BaseModel):
    attempts: list[DeliveryAttemptV1] = Field(description="Newest first.")


class CaseEventV1(BaseModel):
    """One case event: a webhook delivery's body, and a `stopper.case-events` record's value."""

    event_id: UUID = Field(description="Unique per event: deduplicate on it.")
    type: CaseEventType
    case_id: UUID
    report_id: str
    hold_id: UUID | None = Field(description="The hold the event is about; none for case_opened.")
    occurred_at: datetime
    data: dict[str, object] = Field(description="By type; accounts masked (****1234).")
