"""The per-app answer cache: its TTL and mode on apps, and ``cached`` on request_logs.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("apps") as batch:
        batch.add_column(sa.Column("cache_ttl_s", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(
            sa.Column(
                "cache_nondeterministic", sa.Boolean(), nullable=False, server_default=sa.false()
            )
        )
    with op.batch_alter_table("request_logs") as batch:
        batch.add_column(
            sa.Column("cached", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("request_logs") as batch:
        batch.drop_column("cached")
    with op.batch_alter_table("apps") as batch:
        batch.drop_column("cache_nondeterministic")
        batch.drop_column("cache_ttl_s")
