"""Cases and what hangs off them: victims, accounts, holds and their supplements, divergences,
transfers, payouts, the audit of transitions, notes and the trail's edges."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from stopper.adapters.db.models.columns import (
    NAMING_PREDICATE,
    STOPPED_FIRST_LEVEL,
    Base,
    BigId,
    Timestamp,
)


def _when_set(name: str, *columns: str) -> Index:
    """An index of the holds whose last column is set (not NULL)."""
    predicate = text(f"{columns[-1]} IS NOT NULL")
    return Index(name, *columns, postgresql_where=predicate, sqlite_where=predicate)


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
        # Partial where a column is empty for most holds: an update that moves a hold writes no
        # entry into an index whose predicate it fails (migration 0023). The sweeps' comparisons
        # (`col <= now`) imply `col IS NOT NULL`, so PostgreSQL and SQLite still use them.
        _when_set("ix_holds_freeze_expiry", "state", "freeze_expires_at"),
        _when_set("ix_holds_freeze_next_attempt_at", "freeze_next_attempt_at"),
        _when_set("ix_holds_return_next_attempt_at", "return_next_attempt_at"),
        _when_set("ix_holds_release_next_attempt_at", "release_next_attempt_at"),
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
    # By case: the unique (case_id, account_id) leads with it; no index of its own.
    case_id: Mapped[UUID] = mapped_column(ForeignKey("cases.id"))
    account_id: Mapped[UUID] = mapped_column(ForeignKey("accounts.id"))
    institution_code: Mapped[str] = mapped_column(String(12))
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
    freeze_next_attempt_at: Mapped[datetime | None] = mapped_column(Timestamp)
    # A return of the frozen funds to the victims; each order after a refusal is a new round.
    return_document_ref: Mapped[str | None] = mapped_column(String(128))
    return_round: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    return_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    return_next_attempt_at: Mapped[datetime | None] = mapped_column(Timestamp)
    # A release (the report withdrawn, the account cleared), until the institution confirms.
    release_ground: Mapped[str | None] = mapped_column(String(32))
    release_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    release_next_attempt_at: Mapped[datetime | None] = mapped_column(Timestamp)
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
    case_id: Mapped[UUID] = mapped_column(ForeignKey("cases.id"))  # led by the unique above
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
