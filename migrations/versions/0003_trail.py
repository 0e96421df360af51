"""money trail edges

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21 23:41:17.004328
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "trail_edges",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("from_hold_id", sa.Uuid(), nullable=False),
        sa.Column("to_hold_id", sa.Uuid(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("institution_code", sa.String(length=12), nullable=True),
        sa.Column("account_number", sa.String(length=34), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("amount_traced", sa.BigInteger(), nullable=False),
        sa.Column("transferred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(length=24), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.id"], name=op.f("fk_trail_edges_case_id_cases")
        ),
        sa.ForeignKeyConstraint(
            ["from_hold_id"], ["holds.id"], name=op.f("fk_trail_edges_from_hold_id_holds")
        ),
        sa.ForeignKeyConstraint(
            ["to_hold_id"], ["holds.id"], name=op.f("fk_trail_edges_to_hold_id_holds")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trail_edges")),
    )
    with op.batch_alter_table("trail_edges", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_trail_edges_case_id"), ["case_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("trail_edges", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_trail_edges_case_id"))

    op.drop_table("trail_edges")
