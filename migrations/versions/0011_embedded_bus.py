"""The embedded default's bus keeps its records in the database

`bus_records` holds the records of every topic (the id is the offset), `bus_offsets` how far
each consumer group has committed; a report answered 202 on the embedded default is in SQLite
before the answer. The tables exist on PostgreSQL too (one schema everywhere), unused there.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bus_records",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("topic", sa.String(255), nullable=False),
        sa.Column("key", sa.String(255), nullable=True),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bus_records")),
        # Offsets must only grow: SQLite may otherwise reuse the id of a deleted last record.
        sqlite_autoincrement=True,
    )
    op.create_index("ix_bus_records_topic_id", "bus_records", ["topic", "id"])
    op.create_table(
        "bus_offsets",
        sa.Column("topic", sa.String(255), nullable=False),
        sa.Column("consumer_group", sa.String(255), nullable=False),
        sa.Column("committed", sa.BigInteger(), nullable=False),
        sa.Column("committed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("topic", "consumer_group", name=op.f("pk_bus_offsets")),
    )


def downgrade() -> None:
    op.drop_table("bus_offsets")
    op.drop_index("ix_bus_records_topic_id", table_name="bus_records")
    op.drop_table("bus_records")
