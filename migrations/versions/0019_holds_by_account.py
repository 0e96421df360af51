"""An index of holds by account: the cases naming an account (the mule-account registry)

Which cases name an account (its holds, each with its case) is read, not stored: the stop
requests of intake and of the dispatcher say whether their account is a known mule, an
operator looks an account up, and a case's view shows the cases it shares an account with.
Each is a few entries of this index; without it every one read every hold. Partial: only the
holds that name their account (one being released or released does not), so a count or a
probe is an index-only scan once the table is vacuumed.

Revision ID: 0019
Revises: 0020
Create Date: 2026-12-05 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0020"
branch_labels = None
depends_on = None

# NAMING_PREDICATE of stopper/adapters/db/models.py, as it was when this migration was written.
_NAMING = sa.text("state NOT IN ('released', 'releasing')")


def upgrade() -> None:
    op.create_index(
        "ix_holds_account_case",
        "holds",
        ["account_id", "case_id"],
        postgresql_where=_NAMING,
        sqlite_where=_NAMING,
    )


def downgrade() -> None:
    op.drop_index("ix_holds_account_case", table_name="holds")
