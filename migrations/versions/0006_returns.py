"""returns of frozen funds to victims

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22 01:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("holds", schema=None) as batch_op:
        batch_op.add_column(sa.Column("return_document_ref", sa.String(length=128), nullable=True))
        batch_op.add_column(
            sa.Column("return_round", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(
            sa.Column("return_attempts", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(
            sa.Column("return_next_attempt_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.create_index(
            batch_op.f("ix_holds_return_next_attempt_at"), ["return_next_attempt_at"], unique=False
        )
    op.create_table(
        "payouts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("hold_id", sa.Uuid(), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("victim_ref", sa.String(length=128), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("institution_code", sa.String(length=12), nullable=False),
        sa.Column("account_number", sa.String(length=34), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("ordered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name=op.f("fk_payouts_case_id_cases")),
        sa.ForeignKeyConstraint(["hold_id"], ["holds.id"], name=op.f("fk_payouts_hold_id_holds")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payouts")),
        sa.UniqueConstraint("hold_id", "round", "victim_ref", name=op.f("uq_payouts_hold_id")),
    )
    with op.batch_alter_table("payouts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_payouts_case_id"), ["case_id"], unique=False)


def downgrade() -> None:
    op.drop_table("payouts")
    with op.batch_alter_table("holds", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_holds_return_next_attempt_at"))
        batch_op.drop_column("return_next_attempt_at")
        batch_op.drop_column("return_attempts")
        batch_op.drop_column("return_round")
        batch_op.drop_column("return_document_ref")
