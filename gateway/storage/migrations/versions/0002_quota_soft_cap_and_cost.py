"""Quotas: the soft-cap switch; request logs: the cost of each interaction.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("quotas") as batch:
        batch.add_column(
            sa.Column("soft_cap", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("request_logs") as batch:
        batch.add_column(
            sa.Column("cost_usd", sa.Float(), nullable=False, server_default=sa.text("0"))
        )


def downgrade() -> None:
    with op.batch_alter_table("request_logs") as batch:
        batch.drop_column("cost_usd")
    with op.batch_alter_table("quotas") as batch:
        batch.drop_column("soft_cap")
