"""A webhook's previous secret during a rotation

While an agency rotates its webhook's secret, the secret being replaced is kept until
`previous_until` (or until the agency says it has switched): deliveries carry a signature by each,
so the agency's receiver verifies them with whichever secret it holds.

Revision ID: 0021
Revises: 0018
Create Date: 2026-12-02 04:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_subscriptions") as batch_op:
        batch_op.add_column(sa.Column("previous_secret", sa.String(128), nullable=True))
        batch_op.add_column(sa.Column("previous_until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("webhook_subscriptions") as batch_op:
        batch_op.drop_column("previous_until")
        batch_op.drop_column("previous_secret")
