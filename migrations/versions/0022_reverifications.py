"""Re-verification: jobs that ask the institutions again about every stopped first-level hold

A job (`POST /v1/reverifications`, `stopper reverify`) is a row: its scope (one institution or
all), the count of holds it set out to ask about, how far it got (the last hold asked, in
(institution, id) order, and the outcomes counted) and the lease of the worker running it, so
that a restart resumes where the job stopped. A partial index of the stopped first-level holds
by institution and id serves its pages (each mostly one institution's, asked in one query).
The divergences table says which of reconciliation and re-verification found each.

Revision ID: 0022
Revises: 0019
Create Date: 2026-12-02 06:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0019"
branch_labels = None
depends_on = None

# STOPPED_FIRST_LEVEL of stopper/adapters/db/models.py, as it was when this migration was written.
_STOPPED_FIRST_LEVEL = sa.text("state = 'stopped' AND layer = 1")


def upgrade() -> None:
    op.create_table(
        "reverifications",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("institution_code", sa.String(12), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("holds", sa.Integer(), nullable=False),
        sa.Column("requested_by", sa.String(128), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cursor_institution", sa.String(12), nullable=True),
        sa.Column("cursor", sa.Uuid(), nullable=True),
        sa.Column("outcomes", sa.JSON(), nullable=False),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reverifications")),
    )
    op.create_index(
        "ix_reverifications_state", "reverifications", ["state", "started_at"], unique=False
    )
    op.create_index(
        "ix_holds_stopped_first_level",
        "holds",
        ["institution_code", "id"],
        postgresql_where=_STOPPED_FIRST_LEVEL,
        sqlite_where=_STOPPED_FIRST_LEVEL,
    )
    with op.batch_alter_table("reconciliation_divergences") as batch_op:
        batch_op.add_column(
            sa.Column("found_by", sa.String(16), nullable=False, server_default="reconciliation")
        )


def downgrade() -> None:
    with op.batch_alter_table("reconciliation_divergences") as batch_op:
        batch_op.drop_column("found_by")
    op.drop_index("ix_holds_stopped_first_level", table_name="holds")
    op.drop_index("ix_reverifications_state", table_name="reverifications")
    op.drop_table("reverifications")
