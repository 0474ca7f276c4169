"""End users: session secrets and revocations, OpenID Connect sign-in, the user on records.

- ``apps``: ``session_max_ttl_s`` (3600), ``oidc_issuer``, ``oidc_audience``,
  ``oidc_user_claim`` (``sub``); an (issuer, audience) pair names at most one app.
- ``session_secrets``: an app's HS256 secrets by ``kid``, encrypted with the keyring like the
  provider keys; a rotated-out one gets ``retired_at`` and ``valid_until`` (from the app's
  ``session_max_ttl_s`` at that moment) and is kept until then.
- ``session_revocations``: sessions of the app (``user`` NULL) or of one user issued at or
  before ``revoked_before`` are refused; the row is kept until ``expires_at``, after which no
  session it could refuse is still alive.
- ``request_logs.user`` (NULL for calls made with the app token), indexed with the app and
  the time for ``/logs?user=`` and ``usage --by user``.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def _time(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    with op.batch_alter_table("apps") as batch:
        batch.add_column(
            sa.Column("session_max_ttl_s", sa.Integer(), nullable=False, server_default="3600")
        )
        batch.add_column(sa.Column("oidc_issuer", sa.String(length=2000), nullable=True))
        batch.add_column(sa.Column("oidc_audience", sa.String(length=500), nullable=True))
        batch.add_column(
            sa.Column(
                "oidc_user_claim", sa.String(length=100), nullable=False, server_default="sub"
            )
        )
        batch.create_unique_constraint("uq_apps_oidc", ["oidc_issuer", "oidc_audience"])
    op.create_table(
        "session_secrets",
        sa.Column("app_id", sa.String(length=40), nullable=False),
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("ciphertext", sa.Text(), nullable=False),
        _time("created_at"),
        _time("retired_at", nullable=True),
        _time("valid_until", nullable=True),
        sa.ForeignKeyConstraint(["app_id"], ["apps.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("app_id", "kid"),
    )
    op.create_table(
        "session_revocations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("app_id", sa.String(length=40), nullable=False),
        sa.Column("user", sa.String(length=600), nullable=True),
        _time("revoked_before"),
        _time("expires_at"),
        sa.ForeignKeyConstraint(["app_id"], ["apps.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_session_revocations_app_id", "session_revocations", ["app_id"])
    with op.batch_alter_table("request_logs") as batch:
        batch.add_column(sa.Column("user", sa.String(length=600), nullable=True))
    op.create_index("ix_request_logs_app_id_user_time", "request_logs", ["app_id", "user", "time"])


def downgrade() -> None:
    op.drop_index("ix_request_logs_app_id_user_time", table_name="request_logs")
    with op.batch_alter_table("request_logs") as batch:
        batch.drop_column("user")
    op.drop_index("ix_session_revocations_app_id", table_name="session_revocations")
    op.drop_table("session_revocations")
    op.drop_table("session_secrets")
    with op.batch_alter_table("apps") as batch:
        batch.drop_constraint("uq_apps_oidc", type_="unique")
        for column in ("oidc_user_claim", "oidc_audience", "oidc_issuer", "session_max_ttl_s"):
            batch.drop_column(column)
