"""What services hand out: plain, immutable views of stored rows, never the rows themselves."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # views stay importable without SQLAlchemy (the CLI's --help is fast)
    from gateway.storage.tables import App, ClientToken, Quota


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class AppInfo:
    id: str
    name: str
    origins: tuple[str, ...]
    model: str
    allowed_models: tuple[str, ...]
    fallback_models: tuple[str, ...]
    base_url: str
    system_prompt: str | None
    max_output_tokens: int
    log_content: str
    workflow: str
    disabled: bool
    has_provider_key: bool
    created_at: datetime
    updated_at: datetime
    session_max_ttl_s: int = 3600
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_user_claim: str = "sub"
    cache_ttl_s: int = 0
    cache_nondeterministic: bool = False

    @classmethod
    def of(cls, app: App, *, has_provider_key: bool) -> AppInfo:
        return cls(
            id=app.id,
            name=app.name,
            origins=tuple(app.origins),
            model=app.model,
            allowed_models=tuple(app.allowed_models),
            fallback_models=tuple(app.fallback_models),
            base_url=app.base_url,
            system_prompt=app.system_prompt,
            max_output_tokens=app.max_output_tokens,
            log_content=app.log_content,
            workflow=app.workflow,
            disabled=app.disabled,
            has_provider_key=has_provider_key,
            created_at=app.created_at,
            updated_at=app.updated_at,
            session_max_ttl_s=app.session_max_ttl_s,
            oidc_issuer=app.oidc_issuer,
            oidc_audience=app.oidc_audience,
            oidc_user_claim=app.oidc_user_claim,
            cache_ttl_s=app.cache_ttl_s,
            cache_nondeterministic=app.cache_nondeterministic,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "origins": list(self.origins),
            "model": self.model,
            "allowed_models": list(self.allowed_models),
            "fallback_models": list(self.fallback_models),
            "base_url": self.base_url,
            "system_prompt": self.system_prompt,
            "max_output_tokens": self.max_output_tokens,
            "log_content": self.log_content,
            "workflow": self.workflow,
            "disabled": self.disabled,
            "has_provider_key": self.has_provider_key,
            "session_max_ttl_s": self.session_max_ttl_s,
            "oidc": None
            if self.oidc_issuer is None
            else {
                "issuer": self.oidc_issuer,
                "audience": self.oidc_audience,
                "user_claim": self.oidc_user_claim,
            },
            "cache": {
                "ttl_s": self.cache_ttl_s,
                "nondeterministic": self.cache_nondeterministic,
            },
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
        }


@dataclass(frozen=True, slots=True)
class TokenInfo:
    id: str
    app_id: str
    hint: str
    label: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, token: ClientToken) -> TokenInfo:
        return cls(
            id=token.id,
            app_id=token.app_id,
            hint=token.hint,
            label=token.label,
            created_at=token.created_at,
            expires_at=token.expires_at,
            revoked_at=token.revoked_at,
        )

    def state(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"

    def to_json(self, now: datetime) -> dict[str, Any]:
        return {
            "id": self.id,
            "app_id": self.app_id,
            "hint": self.hint,
            "label": self.label,
            "state": self.state(now),
            "created_at": _iso(self.created_at),
            "expires_at": _iso(self.expires_at),
            "revoked_at": _iso(self.revoked_at),
        }


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A freshly issued token: the only object that ever holds the secret."""

    info: TokenInfo
    secret: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.info.id,
            "token": self.secret,
            "label": self.info.label,
            "expires_at": _iso(self.info.expires_at),
        }


@dataclass(frozen=True, slots=True)
class QuotaLimits:
    rpm: int | None = None
    tpm: int | None = None
    tokens_per_day: int | None = None
    max_concurrent: int | None = None
    budget_usd_month: float | None = None
    #: Soft cap: a streaming answer may run past the remaining tokens/budget (hard cap off).
    soft_cap: bool | None = None
    #: The same limits for each user of the app (each user has their own counters).
    user_rpm: int | None = None
    user_tpm: int | None = None
    user_tokens_per_day: int | None = None
    user_max_concurrent: int | None = None
    user_budget_usd_month: float | None = None

    @classmethod
    def of(cls, quota: Quota | None) -> QuotaLimits:
        if quota is None:
            return cls(soft_cap=False)
        return cls(
            rpm=quota.rpm,
            tpm=quota.tpm,
            tokens_per_day=quota.tokens_per_day,
            max_concurrent=quota.max_concurrent,
            budget_usd_month=quota.budget_usd_month,
            soft_cap=quota.soft_cap,
            user_rpm=quota.user_rpm,
            user_tpm=quota.user_tpm,
            user_tokens_per_day=quota.user_tokens_per_day,
            user_max_concurrent=quota.user_max_concurrent,
            user_budget_usd_month=quota.user_budget_usd_month,
        )

    @property
    def has_user_limits(self) -> bool:
        return any(value is not None for value in self.user_numeric().values())

    def user_numeric(self) -> dict[str, int | float | None]:
        """The per-user limits, under the app limits' names (rpm, tpm, ...)."""
        return {
            "rpm": self.user_rpm,
            "tpm": self.user_tpm,
            "tokens_per_day": self.user_tokens_per_day,
            "max_concurrent": self.user_max_concurrent,
            "budget_usd_month": self.user_budget_usd_month,
        }

    def numeric(self) -> dict[str, int | float | None]:
        return {
            "rpm": self.rpm,
            "tpm": self.tpm,
            "tokens_per_day": self.tokens_per_day,
            "max_concurrent": self.max_concurrent,
            "budget_usd_month": self.budget_usd_month,
            "user_rpm": self.user_rpm,
            "user_tpm": self.user_tpm,
            "user_tokens_per_day": self.user_tokens_per_day,
            "user_max_concurrent": self.user_max_concurrent,
            "user_budget_usd_month": self.user_budget_usd_month,
        }

    def to_json(self) -> dict[str, Any]:
        return {**self.numeric(), "soft_cap": bool(self.soft_cap)}
