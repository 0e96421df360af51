"""initial schema: cases, holds, audit, outbox

Revision ID: 0001
Revises:
Create Date: 2026-11-21 22:51:29.785249
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


# The audit of hold transitions may end up in court: the database itself refuses to change it.
_PG_AUDIT_GUARD = """
CREATE FUNCTION stopper_refuse_audit_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'hold_transitions is append-only';
END;
$$ LANGUAGE plpgsql
"""


def _create_audit_guard() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute(_PG_AUDIT_GUARD)
        op.execute(
            "CREATE TRIGGER hold_transitions_append_only BEFORE UPDATE OR DELETE "
            "ON hold_transitions FOR EACH ROW EXECUTE FUNCTION stopper_refuse_audit_change()"
        )
    else:
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER hold_transitions_no_{action.lower()} BEFORE {action} "
                "ON hold_transitions BEGIN SELECT RAISE(ABORT, "
                "'hold_transitions is append-only'); END"
            )


def _drop_audit_guard() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS hold_transitions_append_only ON hold_transitions")
        op.execute("DROP FUNCTION IF EXISTS stopper_refuse_audit_change()")
    else:
        op.execute("DROP TRIGGER IF EXISTS hold_transitions_no_update")
        op.execute("DROP TRIGGER IF EXISTS hold_transitions_no_delete")


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("institution_code", sa.String(length=12), nullable=False),
        sa.Column("account_number", sa.String(length=34), nullable=False),
        sa.Column("holder_name", sa.String(length=140), nullable=True),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
        sa.UniqueConstraint(
            "institution_code", "account_number", name=op.f("uq_accounts_institution_code")
        ),
    )
    op.create_table(
        "cases",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("report_id", sa.String(length=128), nullable=False),
        sa.Column("agency_code", sa.String(length=128), nullable=False),
        sa.Column("report_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cases")),
        sa.UniqueConstraint("report_id", name=op.f("uq_cases_report_id")),
    )
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_cases_agency_code"), ["agency_code"], unique=False)
        batch_op.create_index(batch_op.f("ix_cases_opened_at"), ["opened_at"], unique=False)

    op.create_table(
        "outbox",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("topic", sa.String(length=255), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_unpublished", ["published_at", "id"], unique=False)

    op.create_table(
        "processed_messages",
        sa.Column("consumer", sa.String(length=64), nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "message_id", name=op.f("pk_processed_messages")),
    )
    op.create_table(
        "holds",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("institution_code", sa.String(length=12), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("state_reason", sa.Text(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount_asked", sa.BigInteger(), nullable=False),
        sa.Column("amount_stopped", sa.BigInteger(), nullable=False),
        sa.Column("amount_frozen", sa.BigInteger(), nullable=False),
        sa.Column("amount_returned", sa.BigInteger(), nullable=False),
        sa.Column("layer", sa.Integer(), nullable=False),
        sa.Column("parent_hold_id", sa.Uuid(), nullable=True),
        sa.Column("reapplications", sa.Integer(), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stop_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("freeze_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_holds_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name=op.f("fk_holds_case_id_cases")),
        sa.ForeignKeyConstraint(
            ["parent_hold_id"], ["holds.id"], name=op.f("fk_holds_parent_hold_id_holds")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_holds")),
        sa.UniqueConstraint("case_id", "account_id", name=op.f("uq_holds_case_id")),
    )
    with op.batch_alter_table("holds", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_holds_case_id"), ["case_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_holds_institution_code"), ["institution_code"], unique=False
        )
        batch_op.create_index("ix_holds_state_updated", ["state", "updated_at"], unique=False)

    op.create_table(
        "victims",
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("victim_ref", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=140), nullable=True),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name=op.f("fk_victims_case_id_cases")),
        sa.PrimaryKeyConstraint("case_id", "victim_ref", name=op.f("pk_victims")),
    )
    op.create_table(
        "hold_transitions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("hold_id", sa.Uuid(), nullable=False),
        sa.Column("from_state", sa.String(length=16), nullable=True),
        sa.Column("to_state", sa.String(length=16), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=True),
        sa.Column("cause", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["hold_id"], ["holds.id"], name=op.f("fk_hold_transitions_hold_id_holds")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hold_transitions")),
    )
    with op.batch_alter_table("hold_transitions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_hold_transitions_hold_id"), ["hold_id"], unique=False)

    op.create_table(
        "transfers",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("victim_ref", sa.String(length=128), nullable=False),
        sa.Column("victim_institution_code", sa.String(length=12), nullable=False),
        sa.Column("victim_account_number", sa.String(length=34), nullable=False),
        sa.Column("receiving_account_id", sa.Uuid(), nullable=False),
        sa.Column("hold_id", sa.Uuid(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("transferred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("reference", sa.String(length=140), nullable=True),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name=op.f("fk_transfers_case_id_cases")),
        sa.ForeignKeyConstraint(["hold_id"], ["holds.id"], name=op.f("fk_transfers_hold_id_holds")),
        sa.ForeignKeyConstraint(
            ["receiving_account_id"],
            ["accounts.id"],
            name=op.f("fk_transfers_receiving_account_id_accounts"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transfers")),
        sa.UniqueConstraint("case_id", "seq", name=op.f("uq_transfers_case_id")),
    )
    with op.batch_alter_table("transfers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_transfers_case_id"), ["case_id"], unique=False)
    _create_audit_guard()


def downgrade() -> None:
    _drop_audit_guard()
    with op.batch_alter_table("transfers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_transfers_case_id"))

    op.drop_table("transfers")
    with op.batch_alter_table("hold_transitions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_hold_transitions_hold_id"))

    op.drop_table("hold_transitions")
    op.drop_table("victims")
    with op.batch_alter_table("holds", schema=None) as batch_op:
        batch_op.drop_index("ix_holds_state_updated")
        batch_op.drop_index(batch_op.f("ix_holds_institution_code"))
        batch_op.drop_index(batch_op.f("ix_holds_case_id"))

    op.drop_table("holds")
    op.drop_table("processed_messages")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_unpublished")

    op.drop_table("outbox")
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cases_opened_at"))
        batch_op.drop_index(batch_op.f("ix_cases_agency_code"))

    op.drop_table("cases")
    op.drop_table("accounts")
