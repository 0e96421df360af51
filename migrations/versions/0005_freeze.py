"""formal freeze orders

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 00:18:47.641805
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("holds", schema=None) as batch_op:
        batch_op.add_column(sa.Column("freeze_document_ref", sa.String(length=128), nullable=True))
        batch_op.add_column(
            sa.Column("freeze_attempts", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(
            sa.Column("freeze_next_attempt_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.create_index(
            batch_op.f("ix_holds_freeze_next_attempt_at"), ["freeze_next_attempt_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("holds", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_holds_freeze_next_attempt_at"))
        batch_op.drop_column("freeze_next_attempt_at")
        batch_op.drop_column("freeze_attempts")
        batch_op.drop_column("freeze_document_ref")
