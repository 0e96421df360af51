"""The plumbing: the outbox, callback nonces, institution health, API keys, the embedded bus
and the ISO 20022 messages sent."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlalchemy import (
    JSON,
    BigInteger,
    Float,
    Index,
    Integer,
    String,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from stopper.adapters.db.models.columns import (
    Base,
    BigId,
    Timestamp,
)


class OutboxRow(Base):
    """Messages owed to the bus, written in the same transaction as the change that owes them."""

    __tablename__ = "outbox"
    # The relay's queue: only the unpublished rows, so marking a row published writes no entry.
    __table_args__ = (
        Index(
            "ix_outbox_unpublished",
            "id",
            postgresql_where=text("published_at IS NULL"),
            sqlite_where=text("published_at IS NULL"),
        ),
    )

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
