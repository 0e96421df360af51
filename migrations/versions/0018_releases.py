"""releases: a hold lifted when its report is withdrawn or its account cleared

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-02 03:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("holds", schema=None) as batch_op:
        batch_op.add_column(sa.Column("release_ground", sa.String(length=32), nullable=True))
        batch_op.add_column(
            sa.Column("release_attempts", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(
            sa.Column("release_next_attempt_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.create_index(
            batch_op.f("ix_holds_release_next_attempt_at"), ["release_next_attempt_at"]
        )


def downgrade() -> None:
    with op.batch_alter_table("holds", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_holds_release_next_attempt_at"))
        batch_op.drop_column("release_next_attempt_at")
        batch_op.drop_column("release_attempts")
        batch_op.drop_column("release_ground")
