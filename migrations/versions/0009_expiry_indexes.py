"""Indexes for the deadline sweeper: stopped holds by lapse time, frozen ones by expiry

Every worker asks once a second which stopped holds lapse (or owe a warning) soon; without an
index that read every stopped hold: 150 ms a sweep at 900,000 holds, per worker.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 03:20:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_holds_stop_expiry", "holds", ["state", "stop_expires_at"])
    op.create_index("ix_holds_freeze_expiry", "holds", ["state", "freeze_expires_at"])


def downgrade() -> None:
    op.drop_index("ix_holds_freeze_expiry", table_name="holds")
    op.drop_index("ix_holds_stop_expiry", table_name="holds")
