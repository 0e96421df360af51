"""ISO 20022 messages Stopper sent, by message id, with the holds each carried

One camt.056 (or return instruction) carries many holds under one message id; a row per hold
and message lets an integrator's question about a message id ("what was MsgId X?") lead to the
holds, and a hold's history to the messages that named it.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 12:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "iso20022_messages",
        sa.Column("message_id", sa.String(35), nullable=False),
        sa.Column("hold_id", sa.Uuid(), nullable=False),
        sa.Column("message_type", sa.String(16), nullable=False),
        sa.Column("institution_code", sa.String(12), nullable=False),
        sa.Column("idempotency_key", sa.String(128), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["hold_id"], ["holds.id"], name=op.f("fk_iso20022_messages_hold_id_holds")
        ),
        sa.PrimaryKeyConstraint("message_id", "hold_id", name=op.f("pk_iso20022_messages")),
    )
    op.create_index(
        op.f("ix_iso20022_messages_hold_id"), "iso20022_messages", ["hold_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_iso20022_messages_hold_id"), table_name="iso20022_messages")
    op.drop_table("iso20022_messages")
