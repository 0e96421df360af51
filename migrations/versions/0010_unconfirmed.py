"""Accepted stop requests: when the institution accepted, how often it was asked since; the
divergences reconciliation found

A request an institution accepted (202, the outcome owed by callback) is `unconfirmed` until
the outcome comes; Stopper asks about it at a slowing cadence (`inquiries`) and gives up only
when its stop would have lapsed (`accepted_at` + the lapse).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 20:20:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("holds", sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("holds", sa.Column("inquiries", sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "reconciliation_divergences",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("hold_id", sa.Uuid(), sa.ForeignKey("holds.id"), nullable=False),
        sa.Column("institution_code", sa.String(12), nullable=False),
        sa.Column("stopper_state", sa.String(16), nullable=False),
        sa.Column("institution_status", sa.String(16), nullable=False),
        sa.Column("found_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "ix_reconciliation_divergences_found_at", "reconciliation_divergences", ["found_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_reconciliation_divergences_found_at", table_name="reconciliation_divergences")
    op.drop_table("reconciliation_divergences")
    with op.batch_alter_table("holds") as batch_op:
        batch_op.drop_column("inquiries")
        batch_op.drop_column("accepted_at")
