"""Client tokens: issue (the secret is returned once), list, revoke, authenticate."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.core.errors import AppDisabled, GatewayError, NotFound, Unauthenticated
from gateway.core.ids import new_token_id
from gateway.security import tokens as token_secrets
from gateway.services.auth_epochs import Announcer
from gateway.services.views import IssuedToken, QuotaLimits, TokenInfo
from gateway.storage import apps as app_rows
from gateway.storage import quotas as quota_rows
from gateway.storage import tokens as token_rows
from gateway.storage.database import Database
from gateway.storage.tables import App, ClientToken, utcnow

#: Unknown, revoked and expired tokens all get this one message, so they look the same.
INVALID_TOKEN_MESSAGE = "The client token is missing, unknown, revoked or expired."  # noqa: S105


@dataclass(frozen=True, slots=True)
class AppContext:
    """Who is calling: the authenticated app and the settings the gateway needs for it."""

    app_id: str
    app_name: str
    token_id: str
    origins: tuple[str, ...]
    model: str
    allowed_models: tuple[str, ...]
    base_url: str
    system_prompt: str | None
    max_output_tokens: int
    log_content: str
    workflow: str = "direct"
    fallback_models: tuple[str, ...] = ()
    limits: QuotaLimits = field(default_factory=QuotaLimits)
    #: The end user (a session's or an OpenID Connect token's); None with the app token.
    user: str | None = None
    #: ``app_token``, ``session`` or ``oidc``: what the caller presented (scopes depend on it).
    credential: str = "app_token"
    #: The one browser origin a session is bound to, if it is.
    bound_origin: str | None = None
    #: The answer cache: seconds an answer is reused (0: off); temperature > 0 cached too.
    cache_ttl_s: int = 0
    cache_nondeterministic: bool = False


async def insert_new_token(
    session: AsyncSession, *, app_id: str, label: str | None, expires_in: timedelta | None = None
) -> IssuedToken:
    new = token_secrets.generate()
    now = utcnow()
    row = ClientToken(
        id=new_token_id(),
        app_id=app_id,
        digest=new.digest,
        hint=new.hint,
        label=label,
        created_at=now,
        expires_at=None if expires_in is None else now + expires_in,
    )
    await token_rows.insert_token(session, row)
    return IssuedToken(info=TokenInfo.of(row), secret=new.secret)


async def issue_token(
    db: Database, *, app_name: str, label: str | None, expires_in: timedelta | None
) -> IssuedToken:
    async with db.session() as session:
        app = await app_rows.find_app_by_name(session, app_name)
        if app is None:
            raise NotFound(f"No app named {app_name!r}. See `orchestra apps list`.")
        return await insert_new_token(session, app_id=app.id, label=label, expires_in=expires_in)


async def list_tokens(db: Database, *, app_name: str) -> list[TokenInfo]:
    async with db.read() as session:
        app = await app_rows.find_app_by_name(session, app_name)
        if app is None:
            raise NotFound(f"No app named {app_name!r}. See `orchestra apps list`.")
        return [TokenInfo.of(row) for row in await token_rows.list_tokens(session, app.id)]


async def revoke_token(
    db: Database, token_id: str, *, announcer: Announcer | None = None
) -> TokenInfo:
    """Revoke the token; every gateway refuses it within its auth-epoch interval (at once with
    an ``announcer`` on Redis)."""
    epoch = None
    async with db.session() as session:
        row = await token_rows.find_token(session, token_id)
        if row is None:
            # A secret pasted by mistake is not echoed back into the terminal or the logs.
            shown = "that id" if token_secrets.looks_like_token(token_id) else f"id {token_id!r}"
            raise NotFound(f"No token with {shown}. See `orchestra tokens list APP` for ids.")
        if row.revoked_at is None:
            await token_rows.mark_revoked(session, row, utcnow())
            epoch = await app_rows.bump_auth_epoch(session, row.app_id)
        info = TokenInfo.of(row)
    if epoch is not None and announcer is not None:
        await announcer.announce(row.app_id, epoch)
    return info


def app_context(token_id: str, app: App, limits: QuotaLimits) -> AppContext:
    return AppContext(
        app_id=app.id,
        app_name=app.name,
        token_id=token_id,
        origins=tuple(app.origins),
        model=app.model,
        allowed_models=tuple(app.allowed_models),
        base_url=app.base_url,
        system_prompt=app.system_prompt,
        max_output_tokens=app.max_output_tokens,
        log_content=app.log_content,
        workflow=app.workflow,
        fallback_models=tuple(app.fallback_models),
        limits=limits,
        cache_ttl_s=app.cache_ttl_s,
        cache_nondeterministic=app.cache_nondeterministic,
    )


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one lookup of a presented token found, and what a cache needs to keep it honest:
    the app's auth epoch when it was read, and when the token expires (POSIX seconds)."""

    context: AppContext | None
    error: GatewayError | None
    app_id: str | None = None
    auth_epoch: int = 0
    expires_at: float | None = None


def _unknown() -> Verdict:
    return Verdict(context=None, error=Unauthenticated(INVALID_TOKEN_MESSAGE))


async def check_token(db: Database, presented: str, *, now: datetime | None = None) -> Verdict:
    """The verdict on a presented token; raises only when the database cannot say."""
    if not token_secrets.looks_like_token(presented):
        return _unknown()
    async with db.read() as session:
        found = await token_rows.find_token_with_app(session, token_secrets.digest(presented))
        quota = None if found is None else await quota_rows.get_quota(session, found[1].id)
    if found is None or not token_secrets.matches(presented, found[0].digest):
        return _unknown()
    token, app = found
    refused: GatewayError | None = None
    if token.revoked_at is not None or (
        token.expires_at is not None and token.expires_at <= (now or utcnow())
    ):
        refused = Unauthenticated(INVALID_TOKEN_MESSAGE)
    elif app.disabled:
        refused = AppDisabled(f"The app {app.name!r} is disabled.")
    return Verdict(
        context=None if refused else app_context(token.id, app, QuotaLimits.of(quota)),
        error=refused,
        app_id=app.id,
        auth_epoch=app.auth_epoch,
        expires_at=None if token.expires_at is None else token.expires_at.timestamp(),
    )


async def authenticate(db: Database, presented: str, *, now: datetime | None = None) -> AppContext:
    """The app behind a presented token, or ``Unauthenticated`` / ``AppDisabled``."""
    verdict = await check_token(db, presented, now=now)
    if verdict.error is not None:
        raise verdict.error
    assert verdict.context is not None
    return verdict.context
