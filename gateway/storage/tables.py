"""SQLModel tables (``table=True``) and nothing else. Alembic migrations own the schema."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import JSON, Column, Field, SQLModel

from gateway.core.clock import utcnow

__all__ = [
    "App",
    "ClientToken",
    "Feedback",
    "ProviderKey",
    "Quota",
    "RequestLog",
    "ResponseOwner",
    "SessionRevocation",
    "SessionSecret",
    "utcnow",
]


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Timezone-aware UTC on every backend (SQLite drops the zone; this puts it back)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, _dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, _dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _time_column(*, nullable: bool = False, index: bool = False) -> Any:
    return Field(sa_column=Column(UTCDateTime(), nullable=nullable, index=index))


class App(SQLModel, table=True):
    __tablename__ = "apps"
    # An OpenID Connect (issuer, audience) pair names one app (migration 0008).
    __table_args__ = (sa.UniqueConstraint("oidc_issuer", "oidc_audience", name="uq_apps_oidc"),)

    id: str = Field(primary_key=True, max_length=40)
    name: str = Field(max_length=63, sa_column_kwargs={"unique": True})
    origins: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    model: str = Field(max_length=200)
    allowed_models: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    fallback_models: list[str] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False, server_default="[]")
    )
    base_url: str = Field(max_length=2000)
    system_prompt: str | None = Field(default=None, sa_column=Column(sa.Text, nullable=True))
    max_output_tokens: int
    log_content: str = Field(default="metadata", max_length=16)
    workflow: str = Field(default="direct", max_length=40)
    disabled: bool = False
    #: Bumped by every change that an auth cache must not outlive (revoke, disable, update…).
    auth_epoch: int = Field(
        default=0, sa_column=Column(sa.BigInteger, nullable=False, server_default="0")
    )
    #: End users (migration 0008): the longest session the app's backend may mint.
    session_max_ttl_s: int = Field(
        default=3600, sa_column=Column(sa.Integer, nullable=False, server_default="3600")
    )
    oidc_issuer: str | None = Field(default=None, max_length=2000)
    oidc_audience: str | None = Field(default=None, max_length=500)
    oidc_user_claim: str = Field(
        default="sub", sa_column=Column(sa.String(100), nullable=False, server_default="sub")
    )
    #: The answer cache (migration 0012): seconds an answer is reused (0: off), and whether
    #: requests with a temperature above 0 are cached too.
    cache_ttl_s: int = Field(
        default=0, sa_column=Column(sa.Integer, nullable=False, server_default="0")
    )
    cache_nondeterministic: bool = Field(
        default=False, sa_column=Column(sa.Boolean, nullable=False, server_default=sa.false())
    )
    created_at: datetime = _time_column()
    updated_at: datetime = _time_column()


class ClientToken(SQLModel, table=True):
    __tablename__ = "client_tokens"

    id: str = Field(primary_key=True, max_length=40)
    app_id: str = Field(foreign_key="apps.id", index=True, ondelete="CASCADE", max_length=40)
    digest: str = Field(max_length=64, sa_column_kwargs={"unique": True})
    hint: str = Field(max_length=16)
    label: str | None = Field(default=None, max_length=200)
    created_at: datetime = _time_column()
    expires_at: datetime | None = _time_column(nullable=True)
    revoked_at: datetime | None = _time_column(nullable=True)


class ProviderKey(SQLModel, table=True):
    __tablename__ = "provider_keys"

    app_id: str = Field(primary_key=True, foreign_key="apps.id", ondelete="CASCADE", max_length=40)
    ciphertext: str = Field(sa_column=Column(sa.Text, nullable=False))
    hint: str = Field(max_length=16)
    updated_at: datetime = _time_column()


class SessionSecret(SQLModel, table=True):
    """One HS256 secret of an app's sessions, encrypted like the provider keys."""

    __tablename__ = "session_secrets"

    app_id: str = Field(primary_key=True, foreign_key="apps.id", ondelete="CASCADE", max_length=40)
    kid: str = Field(primary_key=True, max_length=64)
    ciphertext: str = Field(sa_column=Column(sa.Text, nullable=False))
    created_at: datetime = _time_column()
    #: Set when rotated out; the secret still verifies sessions until they have expired.
    retired_at: datetime | None = _time_column(nullable=True)
    #: Set with ``retired_at``: until when the secret verifies, from the ``session_max_ttl_s``
    #: in force when it was retired (a later change of the setting does not move it).
    valid_until: datetime | None = _time_column(nullable=True)


class SessionRevocation(SQLModel, table=True):
    """Sessions of the app (``user`` None) or of one user issued at or before a moment."""

    __tablename__ = "session_revocations"

    id: int | None = Field(default=None, primary_key=True)
    app_id: str = Field(foreign_key="apps.id", index=True, ondelete="CASCADE", max_length=40)
    user: str | None = Field(default=None, max_length=600)
    revoked_before: datetime = _time_column()
    #: After this no session the row could refuse is alive: it may be deleted.
    expires_at: datetime = _time_column()


class Quota(SQLModel, table=True):
    __tablename__ = "quotas"

    app_id: str = Field(primary_key=True, foreign_key="apps.id", ondelete="CASCADE", max_length=40)
    rpm: int | None = None
    # Token counts are 64-bit (migration 0006): a day of a busy app passes 2**31.
    tpm: int | None = Field(default=None, sa_type=sa.BigInteger)
    tokens_per_day: int | None = Field(default=None, sa_type=sa.BigInteger)
    max_concurrent: int | None = None
    budget_usd_month: float | None = None
    soft_cap: bool = False
    updated_at: datetime = _time_column()
    # The same limits for each user of the app (migration 0009).
    user_rpm: int | None = None
    user_tpm: int | None = Field(default=None, sa_type=sa.BigInteger)
    user_tokens_per_day: int | None = Field(default=None, sa_type=sa.BigInteger)
    user_max_concurrent: int | None = None
    user_budget_usd_month: float | None = None


class RequestLog(SQLModel, table=True):
    __tablename__ = "request_logs"
    # One app's records, newest first, by cursor (as in migration 0001).
    __table_args__ = (
        sa.Index("ix_request_logs_app_id_id", "app_id", "id"),
        # One user's records of an app (migration 0008): /logs?user=, usage --by user.
        sa.Index("ix_request_logs_app_id_user_time", "app_id", "user", "time"),
    )

    id: int | None = Field(default=None, primary_key=True)
    time: datetime = _time_column(index=True)
    app_id: str | None = Field(default=None, max_length=40)
    app_name: str | None = Field(default=None, max_length=63)
    #: The end user (session or OpenID Connect); None for calls made with the app token.
    user: str | None = Field(default=None, max_length=600)
    request_id: str = Field(max_length=40, index=True)
    route: str = Field(max_length=100)
    model: str | None = Field(default=None, max_length=200)
    workflow: str | None = Field(default=None, max_length=40)
    outcome: str = Field(max_length=40, index=True)
    http_status: int
    error_code: str | None = Field(default=None, max_length=60)
    # 64-bit (migration 0006): an upstream's usage is clamped to what these hold.
    prompt_tokens: int = Field(default=0, sa_type=sa.BigInteger)
    completion_tokens: int = Field(default=0, sa_type=sa.BigInteger)
    ttft_ms: float | None = None
    duration_ms: float = 0.0
    cost_usd: float = 0.0
    origin: str | None = Field(default=None, max_length=2000)
    prompt_text: str | None = Field(default=None, sa_column=Column(sa.Text, nullable=True))
    answer_text: str | None = Field(default=None, sa_column=Column(sa.Text, nullable=True))
    request_metadata: dict[str, Any] | None = Field(
        default=None, sa_column=Column("metadata", JSON, nullable=True)
    )
    #: Answered from the app's answer cache (migration 0012): no upstream call, no cost.
    cached: bool = Field(
        default=False, sa_column=Column(sa.Boolean, nullable=False, server_default=sa.false())
    )


class Feedback(SQLModel, table=True):
    """A rating of one answer (migration 0010). Keyed by the request id, not a foreign key to
    ``request_logs``: the record may still be on its way there (it is written in batches)."""

    __tablename__ = "feedback"
    __table_args__ = (sa.CheckConstraint("score IN (-1, 1)", name="ck_feedback_score"),)

    request_id: str = Field(primary_key=True, max_length=40)
    #: Who made the rated request: the app, and the end user (None: the app token).
    app_id: str = Field(max_length=40)
    user: str | None = Field(default=None, max_length=600)
    score: int = Field(sa_type=sa.SmallInteger)
    comment: str | None = Field(default=None, sa_column=Column(sa.Text, nullable=True))
    rated_at: datetime = _time_column(index=True)


class ResponseOwner(SQLModel, table=True):
    """Who created a stored Responses API object: only that app (and user) may see it."""

    __tablename__ = "response_owners"

    #: OpenAI's ``resp_...`` id (bounded by the route before it gets here).
    response_id: str = Field(primary_key=True, max_length=200)
    app_id: str = Field(foreign_key="apps.id", index=True, ondelete="CASCADE", max_length=40)
    #: The end user (session or OpenID Connect); None for calls made with the app token.
    user: str | None = Field(default=None, max_length=600)
    created_at: datetime = _time_column()
