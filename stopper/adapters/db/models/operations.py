"""What operators and agencies set going: webhook subscriptions and deliveries, four-eyes
approvals, re-verifications."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlalchemy import (
    JSON,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from stopper.adapters.db.models.columns import (
    Base,
    BigId,
    Timestamp,
)


class WebhookSubscriptionRow(Base):
    """An agency's webhook: where its case events go, which ones, and the secret they are
    signed with (kept to sign, so not hashed). A removed one keeps its row for the log."""

    __tablename__ = "webhook_subscriptions"

    id: Mapped[UUID] = mapped_column(primary_key=True)
    agency_code: Mapped[str] = mapped_column(String(128), index=True)
    url: Mapped[str] = mapped_column(String(2048))
    events: Mapped[list[str]] = mapped_column(JSON)
    secret: Mapped[str] = mapped_column(String(128))
    # During a rotation: the secret being replaced, still signing deliveries until then.
    previous_secret: Mapped[str | None] = mapped_column(String(128))
    previous_until: Mapped[datetime | None] = mapped_column(Timestamp)
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    created_by: Mapped[str] = mapped_column(String(200))
    removed_at: Mapped[datetime | None] = mapped_column(Timestamp)


class WebhookDeliveryRow(Base):
    """One case event owed to one subscription, until delivered or given up. `id` orders one
    case's events (they are written in the order of the case-events topic)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("subscription_id", "event_id"),
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_case", "subscription_id", "case_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    subscription_id: Mapped[UUID] = mapped_column(ForeignKey("webhook_subscriptions.id"))
    event_id: Mapped[UUID] = mapped_column()
    event_type: Mapped[str] = mapped_column(String(32))
    case_id: Mapped[UUID] = mapped_column()
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))  # pending, delivered, gave_up
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    next_attempt_at: Mapped[datetime] = mapped_column(Timestamp)
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp)


class WebhookAttemptRow(Base):
    """The delivery log: every attempt at a delivery, and what came of it."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (Index("ix_webhook_attempts_subscription", "subscription_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(BigId, ForeignKey("webhook_deliveries.id"))
    subscription_id: Mapped[UUID] = mapped_column()
    attempt: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(Timestamp)
    outcome: Mapped[str] = mapped_column(String(16))
    status_code: Mapped[int | None] = mapped_column(Integer)
    detail: Mapped[str] = mapped_column(String(200))
    duration_ms: Mapped[float] = mapped_column(Float)


class ApprovalOrderRow(Base):
    """An order that moves money or freezes it, waiting for a second operator
    (`stopper.app.approvals`): who asked, who decided, and what the decision did."""

    __tablename__ = "approval_orders"
    __table_args__ = (Index("ix_approval_orders_status", "kind", "status", "requested_at"),)

    id: Mapped[UUID] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    case_id: Mapped[UUID] = mapped_column(ForeignKey("cases.id"), index=True)
    hold_id: Mapped[UUID | None] = mapped_column(ForeignKey("holds.id"))
    hold_ids: Mapped[list[str] | None] = mapped_column(JSON)
    legal_document_ref: Mapped[str] = mapped_column(String(128))
    requested_by: Mapped[str] = mapped_column(String(64))
    requester_person: Mapped[str] = mapped_column(String(64))
    requester_key_id: Mapped[str | None] = mapped_column(String(32))
    requester_actor: Mapped[str] = mapped_column(String(128))
    requested_at: Mapped[datetime] = mapped_column(Timestamp)
    decided_by: Mapped[str | None] = mapped_column(String(64))
    decider_person: Mapped[str | None] = mapped_column(String(64))
    decider_key_id: Mapped[str | None] = mapped_column(String(32))
    decider_actor: Mapped[str | None] = mapped_column(String(128))
    decided_at: Mapped[datetime | None] = mapped_column(Timestamp)
    reason: Mapped[str | None] = mapped_column(Text)


class ReverificationRow(Base):
    """A re-verification job (`stopper.app.reverify`): its scope, how far it got (the last hold
    asked about, by institution and id; outcomes counted), and the lease of the worker
    running it."""

    __tablename__ = "reverifications"
    __table_args__ = (Index("ix_reverifications_state", "state", "started_at"),)

    id: Mapped[UUID] = mapped_column(primary_key=True)
    institution_code: Mapped[str | None] = mapped_column(String(12))
    state: Mapped[str] = mapped_column(String(16))
    holds: Mapped[int] = mapped_column(Integer)
    requested_by: Mapped[str] = mapped_column(String(128))
    started_at: Mapped[datetime] = mapped_column(Timestamp)
    updated_at: Mapped[datetime] = mapped_column(Timestamp)
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp)
    cursor_institution: Mapped[str | None] = mapped_column(String(12))
    cursor: Mapped[UUID | None] = mapped_column()
    outcomes: Mapped[dict[str, int]] = mapped_column(JSON)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(Timestamp)
