"""Tables. Amounts are integers in minor units; times are timezone-aware UTC.

The Alembic migrations in `migrations/` create exactly these; a test compares them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from stopper.domain.mules import LIFTED

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments INTEGER PRIMARY KEY columns.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UtcTimestamp(TypeDecorator[datetime]):
    """Timezone-aware UTC in, timezone-aware UTC out, also on SQLite (which keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored: pass an aware UTC time")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value


Timestamp = UtcTimestamp()
# A hold that names its account (`stopper.domain.mules`), as SQL: the predicate of the
# holds-by-account index, and of every query that reads it (`stopper.adapters.db.naming`).
NAMING_PREDICATE = "state NOT IN ({})".format(", ".join(f"'{s}'" for s in sorted(LIFTED)))
# A stopped first-level hold: what a re-verification asks about (`stopper.app.reverify`), as
# SQL: the predicate of its partial index and of the reads that page through it.
STOPPED_FIRST_LEVEL = "state = 'stopped' AND layer = 1"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class CaseRow(Base):
    __tablename__ = "cases"

    id: Mapped[UUID] = mapped_column(primary_key=True)
    report_id: Mapped[str] = mapped_column(String(128), unique=True)
    agency_code: Mapped[str] = mapped_column(String(128), index=True)
    report_fingerprint: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(16))
    reported_at: Mapped[datetime] = mapped_column(Timestamp)
    accepted_at: Mapped[datetime] = mapped_column(Timestamp)
    opened_at: Mapped[datetime] = mapped_column(Timestamp, index=True)


class VictimRow(Base):
    __tablename__ = "victims"

    case_id: Mapped[UUID] = mapped_column(ForeignKey("cases.id"), primary_key=True)
    victim_ref: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(140))


class AccountRow(Base):
    """An account at an institution, shared by every case that names it."""

    __tablename__ = "accounts"
    __table_args__ = (UniqueConstraint("institution_code", "account_number"),)

    id: Mapped[UUID] = mapped_column(primary_key=True)
    institution_code: Mapped[str] = mapped_column(String(12))
    account_number: Mapped[str] = mapped_column(String(34))
    holder_name: Mapped[str | None] = mapped_column(String(140))
    first_seen_at: Mapped[datetime] = mapped_column(Timestamp)


class HoldRow(Base):
    __tablename__ = "holds"
    __table_args__ = (
        UniqueConstraint("case_id", "account_id"),
        Index("ix_holds_state_updated", "state", "updated_at"),
        Index("ix_holds_due", "state", "next_attempt_at"),
        # The deadline sweeper's reads (see SqlStore.holds_near_deadline).
        Index("ix_holds_stop_expiry", "state", "stop_expires_at"),
        Index("ix_holds_freeze_expiry", "state", "freeze_expires_at"),
        # The mule-account registry (`stopper.adapters.db.mules`): the cases naming an account.
        # Partial: the holds that name their account (`stopper.adapters.db.naming`), so a count
        # or a probe needs no heap page once the table is vacuumed (an index-only scan).
        Index(
            "ix_holds_account_case",
            "account_id",
            "case_id",
            postgresql_where=text(NAMING_PREDICATE),
            sqlite_where=text(NAMING_PREDICATE),
        ),
        # Re-verification's pages, in (institution, id) order (`adapters.db.reverifications`).
        Index(
            "ix_holds_stopped_first_level",
            "institution_code",
            "id",
            postgresql_where=text(STOPPED_FIRST_LEVEL),
            sqlite_where=text(STOPPED_FIRST_LEVEL),
        ),
    )

    id: Mapped[UUID] = mapped_column(primary_key=True)
    case_id: Mapped[UUID] = mapped_column(ForeignKey("cases.id"), index=True)
    account_id: Mapped[UUID] = mapped_column(ForeignKey("accounts.id"))
    institution_code: Mapped[str] = mapped_column(String(12), index=True)
    state: Mapped[str] = mapped_column(String(16))
    state_reason: Mapped[str | None] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    amount_asked: Mapped[int] = mapped_column(BigInteger)
    amount_stopped: Mapped[int] = mapped_column(BigInteger, default=0)
    amount_frozen: Mapped[int] = mapped_column(BigInteger, default=0)
    amount_returned: Mapped[int] = mapped_column(BigInteger, default=0)
    layer: Mapped[int] = mapped_column(Integer)
    parent_hold_id: Mapped[UUID | None] = mapped_column(ForeignKey("holds.id"))
    reapplications: Mapped[int] = mapped_column(Integer, default=0)
    requested_at: Mapped[datetime] = mapped_column(Timestamp)
    stop_expires_at: Mapped[datetime | None] = mapped_column(Timestamp)
    freeze_expires_at: Mapped[datetime | None] = mapped_column(Timestamp)
    updated_at: Mapped[datetime] = mapped_column(Timestamp)
    # Dispatch bookkeeping: which attempt, when the next is due, when to give up.
    report_accepted_at: Mapped[datetime | None] = mapped_column(Timestamp)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[datetime | None] = mapped_column(Timestamp)
    dispatch_deadline_at: Mapped[datetime | None] = mapped_column(Timestamp)
    sent_at: Mapped[datetime | None] = mapped_column(Timestamp)
    confirmed_at: Mapped[datetime | None] = mapped_column(Timestamp)
    # The institution accepted the request (its outcome owed by callback): since when, and how
    # many status inquiries Stopper has made about it since (the cadence slows with each).
    accepted_at: Mapped[datetime | None] = mapped_column(Timestamp)
    inquiries: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # How many of the lapse warnings for the current stop (or freeze) have gone out.
    warnings_sent: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # A formal freeze ordered on the strength of a legal document, until the institution confirms.
    freeze_document_ref: Mapped[str | None] = mapped_column(String(128))
    freeze_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    freeze_next_attempt_at: Mapped[datetime | None] = mapped_column(Timestamp, index=True)
    # A return of the frozen funds to the victims; each order after a refusal is a new round.
    return_document_ref: Mapped[str | None] = mapped_column(String(128))
    return_round: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    return_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    return_next_attempt_at: Mapped[datetime | None] = mapped_column(Timestamp, index=True)
    # A release (the report withdrawn, the account cleared), until the institution confirms.
    release_ground: Mapped[str | None] = mapped_column(String(32))
    release_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    release_next_attempt_at: Mapped[datetime | None] = mapped_column(Timestamp, index=True)
    # Supplements (stopper.domain.supplements): what the first request of the generation asks,
    # what supplements hold of amount_stopped, how many were asked (the next one's number - 1).
    amount_first_request: Mapped[int] = mapped_column(BigInteger)
    amount_stopped_by_supplements: Mapped[int] = mapped_column(
        BigInteger, default=0, server_default="0"
    )
    supplements: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class HoldSupplementRow(Base):
    """A supplement: the extra a trail merge asked of a hold whose request was already out, with
    its own request's bookkeeping (as a hold's). Written under its hold's row lock."""

    __tablename__ = "hold_supplements"
    __table_args__ = (Index("ix_hold_supplements_due", "state", "next_attempt_at"),)

    hold_id: Mapped[UUID] = mapped_column(ForeignKey("holds.id"), primary_key=True)
    number: Mapped[int] = mapped_column(Integer, primary_key=True)
    generation: Mapped[int] = mapped_column(Integer)
    amount: Mapped[int] = mapped_column(BigInteger)
    # The hold whose onward transfer merged in (a reference, not a key: written while that
    # hold's answer holds its row locked).
    merged_from_hold_id: Mapped[UUID] = mapped_column()
    state: Mapped[str] = mapped_column(String(16))
    amount_held: Mapped[int] = mapped_column(BigInteger)
    requested_at: Mapped[datetime] = mapped_column(Timestamp)
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime | None] = mapped_column(Timestamp)
    dispatch_deadline_at: Mapped[datetime | None] = mapped_column(Timestamp)
    sent_at: Mapped[datetime | None] = mapped_column(Timestamp)
    accepted_at: Mapped[datetime | None] = mapped_column(Timestamp)
    inquiries: Mapped[int] = mapped_column(Integer)
    state_reason: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(Timestamp)


class DivergenceRow(Base):
    """A hold whose state in Stopper differed from its institution's record when reconciliation
    (`stopper reconcile`) or a re-verification (`stopper reverify`) asked; the hold was moved to
    the institution's truth where the table allows it."""

    __tablename__ = "reconciliation_divergences"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    hold_id: Mapped[UUID] = mapped_column(ForeignKey("holds.id"))
    institution_code: Mapped[str] = mapped_column(String(12))
    stopper_state: Mapped[str] = mapped_column(String(16))
    institution_status: Mapped[str] = mapped_column(String(16))
    found_at: Mapped[datetime] = mapped_column(Timestamp, index=True)
    found_by: Mapped[str] = mapped_column(String(16), server_default="reconciliation")


class TransferRow(Base):
    __tablename__ = "transfers"
    __table_args__ = (UniqueConstraint("case_id", "seq"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    case_id: Mapped[UUID] = mapped_column(ForeignKey("cases.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    victim_ref: Mapped[str] = mapped_column(String(128))
    victim_institution_code: Mapped[str] = mapped_column(String(12))
    victim_account_number: Mapped[str] = mapped_column(String(34))
    receiving_account_id: Mapped[UUID] = mapped_column(ForeignKey("accounts.id"))
    hold_id: Mapped[UUID] = mapped_column(ForeignKey("holds.id"))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    transferred_at: Mapped[datetime] = mapped_column(Timestamp)
    channel: Mapped[str] = mapped_column(String(32))
    reference: Mapped[str | None] = mapped_column(String(140))


class PayoutRow(Base):
    """One victim's share of one hold's return round: pending until the institution confirms
    (paid) or refuses (cancelled)."""

    __tablename__ = "payouts"
    __table_args__ = (UniqueConstraint("hold_id", "round", "victim_ref"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    case_id: Mapped[UUID] = mapped_column(ForeignKey("cases.id"), index=True)
    hold_id: Mapped[UUID] = mapped_column(ForeignKey("holds.id"))
    round: Mapped[int] = mapped_column(Integer)
    victim_ref: Mapped[str] = mapped_column(String(128))
    currency: Mapped[str] = mapped_column(String(3))
    amount: Mapped[int] = mapped_column(BigInteger)
    institution_code: Mapped[str] = mapped_column(String(12))
    account_number: Mapped[str] = mapped_column(String(34))
    status: Mapped[str] = mapped_column(String(16))
    ordered_at: Mapped[datetime] = mapped_column(Timestamp)
    settled_at: Mapped[datetime | None] = mapped_column(Timestamp)


class HoldTransitionRow(Base):
    """The append-only audit of every hold state change. Triggers refuse UPDATE and DELETE."""

    __tablename__ = "hold_transitions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    hold_id: Mapped[UUID] = mapped_column(ForeignKey("holds.id"), index=True)
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    event: Mapped[str | None] = mapped_column(String(32))
    cause: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime] = mapped_column(Timestamp)


class HoldNoteRow(Base):
    """A person's note on a hold, outside its state machine: "handled" on a failed or
    unconfirmed hold (what they did, e.g. phoned the bank). Append-only, like the transitions;
    a hold is handled while its newest note is newer than its last transition."""

    __tablename__ = "hold_notes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    hold_id: Mapped[UUID] = mapped_column(ForeignKey("holds.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    hold_state: Mapped[str] = mapped_column(String(16))  # the state the note was about
    note: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime] = mapped_column(Timestamp)


class OutboxRow(Base):
    """Messages owed to the bus, written in the same transaction as the change that owes them."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_unpublished", "published_at", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    topic: Mapped[str] = mapped_column(String(255))
    key: Mapped[str | None] = mapped_column(String(255))
    payload: Mapped[dict[str, object]] = mapped_column(JSON)
    headers: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    published_at: Mapped[datetime | None] = mapped_column(Timestamp)


class CallbackNonceRow(Base):
    """Nonces of signed institution callbacks already seen: a replay is refused."""

    __tablename__ = "callback_nonces"

    institution_code: Mapped[str] = mapped_column(String(12), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(Timestamp, index=True)


class TrailEdgeRow(Base):
    """One onward transfer an institution reported, and what the money trail did with it."""

    __tablename__ = "trail_edges"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    case_id: Mapped[UUID] = mapped_column(ForeignKey("cases.id"), index=True)
    from_hold_id: Mapped[UUID] = mapped_column(ForeignKey("holds.id"))
    to_hold_id: Mapped[UUID | None] = mapped_column(ForeignKey("holds.id"))
    kind: Mapped[str] = mapped_column(String(16))
    institution_code: Mapped[str | None] = mapped_column(String(12))
    account_number: Mapped[str | None] = mapped_column(String(34))
    amount: Mapped[int] = mapped_column(BigInteger)
    amount_traced: Mapped[int] = mapped_column(BigInteger)
    transferred_at: Mapped[datetime] = mapped_column(Timestamp)
    outcome: Mapped[str] = mapped_column(String(24))
    recorded_at: Mapped[datetime] = mapped_column(Timestamp)


class InstitutionHealthRow(Base):
    """Each instance's latest view of each institution (breaker, recent attempts), refreshed
    every few seconds by its workers."""

    __tablename__ = "institution_health"

    instance: Mapped[str] = mapped_column(String(64), primary_key=True)
    institution_code: Mapped[str] = mapped_column(String(12), primary_key=True)
    breaker_state: Mapped[int] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer)
    failures: Mapped[int] = mapped_column(Integer)
    latency_p95_ms: Mapped[float | None] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, index=True)


class ApiKeyRow(Base):
    """API keys of intake systems and operators: the secret is stored as its SHA-256 only."""

    __tablename__ = "api_keys"

    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    agency_code: Mapped[str | None] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    secret_sha256: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(200))
    # The person an operator key belongs to: four eyes compare people, not keys.
    holder: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    revoked_at: Mapped[datetime | None] = mapped_column(Timestamp)


class BusRecordRow(Base):
    """A record on a topic of the embedded default's bus (`SqliteBus`), kept until every
    consumer group reading its topic has committed it."""

    __tablename__ = "bus_records"
    # AUTOINCREMENT: ids are the topics' offsets, so SQLite must never reuse the id of a
    # deleted (committed) last record.
    __table_args__ = (
        Index("ix_bus_records_topic_id", "topic", "id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    topic: Mapped[str] = mapped_column(String(255))
    key: Mapped[str | None] = mapped_column(String(255))
    value: Mapped[bytes] = mapped_column()  # LargeBinary
    headers: Mapped[dict[str, str]] = mapped_column(JSON)
    published_at: Mapped[datetime] = mapped_column(Timestamp)


class BusOffsetRow(Base):
    """How far each consumer group of the embedded default's bus has committed, per topic: the
    id of the last record it is done with."""

    __tablename__ = "bus_offsets"

    topic: Mapped[str] = mapped_column(String(255), primary_key=True)
    consumer_group: Mapped[str] = mapped_column(String(255), primary_key=True)
    committed: Mapped[int] = mapped_column(BigInteger)
    committed_at: Mapped[datetime] = mapped_column(Timestamp)


class Iso20022MessageRow(Base):
    """An ISO 20022 message Stopper sent (a camt.056, a return instruction): one row per hold it
    carried, so its message id leads to the holds and a hold to the messages that named it."""

    __tablename__ = "iso20022_messages"

    message_id: Mapped[str] = mapped_column(String(35), primary_key=True)
    # No foreign key: the rows are written while the dispatcher holds the same holds locked FOR
    # UPDATE, and a key check would wait on (and deadlock with) those locks (migration 0017).
    hold_id: Mapped[UUID] = mapped_column(primary_key=True, index=True)
    message_type: Mapped[str] = mapped_column(String(16))
    institution_code: Mapped[str] = mapped_column(String(12))
    idempotency_key: Mapped[str] = mapped_column(String(128))
    sent_at: Mapped[datetime] = mapped_column(Timestamp)


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
