"""Initial schema: apps, client tokens, provider keys, quotas, request logs.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "apps",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(63), nullable=False, unique=True),
        sa.Column("origins", sa.JSON(), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("allowed_models", sa.JSON(), nullable=False),
        sa.Column("base_url", sa.String(2000), nullable=False),
        sa.Column("system_prompt", sa.Text(), nullable=True),
        sa.Column("max_output_tokens", sa.Integer(), nullable=False),
        sa.Column("log_content", sa.String(16), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
    )
    op.create_table(
        "client_tokens",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column(
            "app_id", sa.String(40), sa.ForeignKey("apps.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("digest", sa.String(64), nullable=False, unique=True),
        sa.Column("hint", sa.String(16), nullable=False),
        sa.Column("label", sa.String(200), nullable=True),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("expires_at", _TIME, nullable=True),
        sa.Column("revoked_at", _TIME, nullable=True),
    )
    op.create_index("ix_client_tokens_app_id", "client_tokens", ["app_id"])
    op.create_table(
        "provider_keys",
        sa.Column(
            "app_id", sa.String(40), sa.ForeignKey("apps.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("ciphertext", sa.Text(), nullable=False),
        sa.Column("hint", sa.String(16), nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
    )
    op.create_table(
        "quotas",
        sa.Column(
            "app_id", sa.String(40), sa.ForeignKey("apps.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("rpm", sa.Integer(), nullable=True),
        sa.Column("tpm", sa.Integer(), nullable=True),
        sa.Column("tokens_per_day", sa.Integer(), nullable=True),
        sa.Column("max_concurrent", sa.Integer(), nullable=True),
        sa.Column("budget_usd_month", sa.Float(), nullable=True),
        sa.Column("updated_at", _TIME, nullable=False),
    )
    op.create_table(
        "request_logs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("time", _TIME, nullable=False),
        sa.Column("app_id", sa.String(40), nullable=True),
        sa.Column("app_name", sa.String(63), nullable=True),
        sa.Column("request_id", sa.String(40), nullable=False),
        sa.Column("route", sa.String(100), nullable=False),
        sa.Column("model", sa.String(200), nullable=True),
        sa.Column("outcome", sa.String(40), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=False),
        sa.Column("error_code", sa.String(60), nullable=True),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("ttft_ms", sa.Float(), nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.Column("origin", sa.String(2000), nullable=True),
        sa.Column("prompt_text", sa.Text(), nullable=True),
        sa.Column("answer_text", sa.Text(), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=True),
    )
    op.create_index("ix_request_logs_time", "request_logs", ["time"])
    op.create_index("ix_request_logs_app_id_id", "request_logs", ["app_id", "id"])
    op.create_index("ix_request_logs_request_id", "request_logs", ["request_id"])
    op.create_index("ix_request_logs_outcome", "request_logs", ["outcome"])


def downgrade() -> None:
    op.drop_table("request_logs")
    op.drop_table("quotas")
    op.drop_table("provider_keys")
    op.drop_table("client_tokens")
    op.drop_table("apps")
