"""Per-user quotas: the same five limits, for each user of an app, in the app's quota row.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_COLUMNS = (
    ("user_rpm", sa.Integer),
    ("user_tpm", sa.BigInteger),
    ("user_tokens_per_day", sa.BigInteger),
    ("user_max_concurrent", sa.Integer),
    ("user_budget_usd_month", sa.Float),
)


def upgrade() -> None:
    with op.batch_alter_table("quotas") as batch:
        for name, type_ in _COLUMNS:
            batch.add_column(sa.Column(name, type_(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("quotas") as batch:
        for name, _ in reversed(_COLUMNS):
            batch.drop_column(name)
