"""Four eyes: orders waiting for a second operator, and the person each operator key belongs to

A return (and, when switched on, a freeze) is recorded as an order pending approval and sent
only once another person approves it; `api_keys.holder` names the person a key belongs to, so
one person with two keys is still one pair of eyes.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02 00:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("holder", sa.String(64), nullable=True))
    op.create_table(
        "approval_orders",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("hold_id", sa.Uuid(), nullable=True),
        sa.Column("hold_ids", sa.JSON(), nullable=True),
        sa.Column("legal_document_ref", sa.String(128), nullable=False),
        sa.Column("requested_by", sa.String(64), nullable=False),
        sa.Column("requester_person", sa.String(64), nullable=False),
        sa.Column("requester_key_id", sa.String(32), nullable=True),
        sa.Column("requester_actor", sa.String(128), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_by", sa.String(64), nullable=True),
        sa.Column("decider_person", sa.String(64), nullable=True),
        sa.Column("decider_key_id", sa.String(32), nullable=True),
        sa.Column("decider_actor", sa.String(128), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.id"], name=op.f("fk_approval_orders_case_id_cases")
        ),
        sa.ForeignKeyConstraint(
            ["hold_id"], ["holds.id"], name=op.f("fk_approval_orders_hold_id_holds")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_approval_orders")),
    )
    op.create_index(
        op.f("ix_approval_orders_case_id"), "approval_orders", ["case_id"], unique=False
    )
    op.create_index(
        "ix_approval_orders_status",
        "approval_orders",
        ["kind", "status", "requested_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_approval_orders_status", table_name="approval_orders")
    op.drop_index(op.f("ix_approval_orders_case_id"), table_name="approval_orders")
    op.drop_table("approval_orders")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("holder")
