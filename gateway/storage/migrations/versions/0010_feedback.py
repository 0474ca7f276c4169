"""Feedback: an end user's or an app's rating of one answer, keyed by its request id.

- ``feedback``: one row per rated request (rating again replaces it): the score (1 or -1),
  an optional comment, who owns the rated request (``app_id``, ``user``) and when it was rated.
  Not a foreign key to ``request_logs``: records are written in batches, so a rating can
  arrive before its record is in the database.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feedback",
        sa.Column("request_id", sa.String(length=40), nullable=False),
        sa.Column("app_id", sa.String(length=40), nullable=False),
        sa.Column("user", sa.String(length=600), nullable=True),
        sa.Column("score", sa.SmallInteger(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("rated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("score IN (-1, 1)", name="ck_feedback_score"),
        sa.PrimaryKeyConstraint("request_id"),
    )
    op.create_index("ix_feedback_rated_at", "feedback", ["rated_at"])


def downgrade() -> None:
    op.drop_index("ix_feedback_rated_at", table_name="feedback")
    op.drop_table("feedback")
