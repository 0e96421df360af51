"""Drop `processed_messages`, a table nothing ever wrote

Consumers are idempotent by the store's own keys instead (a case id per report, a hold's state
and version per answer, a callback's nonce), so a table of message ids applied stayed empty.
The downgrade creates it again as 0001 made it.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_table("processed_messages")


def downgrade() -> None:
    op.create_table(
        "processed_messages",
        sa.Column("consumer", sa.String(length=64), nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "message_id", name=op.f("pk_processed_messages")),
    )
