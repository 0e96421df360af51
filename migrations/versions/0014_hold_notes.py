"""Notes people leave on a hold outside its state machine ("handled": a failed or unconfirmed
hold a person dealt with), kept beside the hold's transitions in its audit

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 00:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hold_notes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("hold_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("hold_state", sa.String(16), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["hold_id"], ["holds.id"], name=op.f("fk_hold_notes_hold_id_holds")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hold_notes")),
    )
    op.create_index(op.f("ix_hold_notes_hold_id"), "hold_notes", ["hold_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_hold_notes_hold_id"), table_name="hold_notes")
    op.drop_table("hold_notes")
