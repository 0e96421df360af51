"""Leaner indexes on the hot tables: what an update of a hold or an outbox row must write

A hold is updated about twice on its way to `stopped`, and each update changes its state, so
PostgreSQL writes a new entry into every index of the table (no HOT update is possible). Two
holds indexes repeated what another already serves: by case (the unique (case_id, account_id)
leads with it) and by institution (reconciliation's reads filter by state first, served by
(state, updated_at); re-verification has its own partial index). Four indexed columns are empty
for almost every hold (a freeze's and a return's and a release's next attempt, a freeze's
expiry): they become partial, `WHERE column IS NOT NULL`, so a hold that has none writes no entry
(every sweep compares the column, which implies the predicate). Transfers by case: the unique
(case_id, seq) leads with it. The outbox's unpublished queue becomes `(id) WHERE published_at IS
NULL`: the relay's read exactly, and marking a row published writes no entry.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-03 08:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None

# (index, its columns); each becomes partial on its last column being set.
_WHEN_SET = (
    ("ix_holds_freeze_expiry", ["state", "freeze_expires_at"]),
    ("ix_holds_freeze_next_attempt_at", ["freeze_next_attempt_at"]),
    ("ix_holds_return_next_attempt_at", ["return_next_attempt_at"]),
    ("ix_holds_release_next_attempt_at", ["release_next_attempt_at"]),
)
_UNPUBLISHED = sa.text("published_at IS NULL")


def upgrade() -> None:
    op.drop_index("ix_holds_case_id", table_name="holds")
    op.drop_index("ix_holds_institution_code", table_name="holds")
    for name, columns in _WHEN_SET:
        op.drop_index(name, table_name="holds")
        predicate = sa.text(f"{columns[-1]} IS NOT NULL")
        op.create_index(name, "holds", columns, postgresql_where=predicate, sqlite_where=predicate)
    op.drop_index("ix_transfers_case_id", table_name="transfers")
    op.drop_index("ix_outbox_unpublished", table_name="outbox")
    op.create_index(
        "ix_outbox_unpublished",
        "outbox",
        ["id"],
        postgresql_where=_UNPUBLISHED,
        sqlite_where=_UNPUBLISHED,
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_unpublished", table_name="outbox")
    op.create_index("ix_outbox_unpublished", "outbox", ["published_at", "id"])
    op.create_index("ix_transfers_case_id", "transfers", ["case_id"])
    for name, columns in _WHEN_SET:
        op.drop_index(name, table_name="holds")
        op.create_index(name, "holds", columns)
    op.create_index("ix_holds_institution_code", "holds", ["institution_code"])
    op.create_index("ix_holds_case_id", "holds", ["case_id"])
