"""each instance's view of each institution's health

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22 02:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "institution_health",
        sa.Column("instance", sa.String(length=64), nullable=False),
        sa.Column("institution_code", sa.String(length=12), nullable=False),
        sa.Column("breaker_state", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("latency_p95_ms", sa.Float(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("instance", "institution_code", name=op.f("pk_institution_health")),
    )
    with op.batch_alter_table("institution_health", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_institution_health_updated_at"), ["updated_at"], unique=False
        )


def downgrade() -> None:
    op.drop_table("institution_health")
