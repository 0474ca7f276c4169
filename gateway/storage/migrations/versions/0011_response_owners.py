"""Who created each stored Responses API object (GET/DELETE /v1/responses/{id} check it).

Revision ID: 0011
Revises: 0010
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
        "response_owners",
        sa.Column("response_id", sa.String(length=200), nullable=False),
        sa.Column("app_id", sa.String(length=40), nullable=False),
        sa.Column("user", sa.String(length=600), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["app_id"], ["apps.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("response_id"),
    )
    op.create_index("ix_response_owners_app_id", "response_owners", ["app_id"])


def downgrade() -> None:
    op.drop_index("ix_response_owners_app_id", table_name="response_owners")
    op.drop_table("response_owners")
