"""iso20022_messages.hold_id without a foreign key to holds

The rows are written as a message leaves, while the dispatcher's transactions hold the same
holds locked FOR UPDATE (claims, answers, lease renewals): the key check's share lock waited on
them and, with many holds per message, deadlocked with them. Holds are never deleted, so the key
guarded nothing; the index stays.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03 18:00:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

_KEY = "fk_iso20022_messages_hold_id_holds"


def upgrade() -> None:
    with op.batch_alter_table("iso20022_messages") as table:
        table.drop_constraint(_KEY, type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("iso20022_messages") as table:
        table.create_foreign_key(_KEY, "holds", ["hold_id"], ["id"])
