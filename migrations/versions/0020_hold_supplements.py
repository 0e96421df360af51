"""Supplements: the extra a trail merge asks of a hold whose stop request is already out

A hold keeps what the first request of its generation asks (`amount_first_request`: fixed once
the request is out, so a retry never asks for more under the same key), what its supplements
hold of `amount_stopped` (`amount_stopped_by_supplements`) and how many it asked
(`supplements`); each supplement is a row of `hold_supplements` with its own request's
bookkeeping. Holds that exist already ask in their first request what they ask in all.

Revision ID: 0020
Revises: 0021
Create Date: 2026-12-05 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("holds", sa.Column("amount_first_request", sa.BigInteger(), nullable=True))
    op.execute("UPDATE holds SET amount_first_request = amount_asked")
    with op.batch_alter_table("holds") as batch_op:
        batch_op.alter_column("amount_first_request", nullable=False)
    op.add_column(
        "holds",
        sa.Column(
            "amount_stopped_by_supplements", sa.BigInteger(), nullable=False, server_default="0"
        ),
    )
    op.add_column(
        "holds", sa.Column("supplements", sa.Integer(), nullable=False, server_default="0")
    )
    op.create_table(
        "hold_supplements",
        sa.Column("hold_id", sa.Uuid(), sa.ForeignKey("holds.id"), primary_key=True),
        sa.Column("number", sa.Integer(), primary_key=True),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("merged_from_hold_id", sa.Uuid(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("amount_held", sa.BigInteger(), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("dispatch_deadline_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("inquiries", sa.Integer(), nullable=False),
        sa.Column("state_reason", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_hold_supplements_due", "hold_supplements", ["state", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_hold_supplements_due", table_name="hold_supplements")
    op.drop_table("hold_supplements")
    with op.batch_alter_table("holds") as batch_op:
        batch_op.drop_column("supplements")
        batch_op.drop_column("amount_stopped_by_supplements")
        batch_op.drop_column("amount_first_request")
