"""Registering and managing apps (the tenants of the gateway)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.core import validation
from gateway.core.errors import Conflict, InvalidRequest, NotFound
from gateway.core.ids import new_app_id
from gateway.security.keyring import Keyring
from gateway.services import provider_keys, tokens
from gateway.services.auth_epochs import REMOVED, Announcer
from gateway.services.sessions import MAX_SESSION_TTL_S
from gateway.services.views import AppInfo, IssuedToken
from gateway.storage import apps as app_rows
from gateway.storage import provider_keys as key_rows
from gateway.storage.database import Database
from gateway.storage.tables import App, utcnow

#: The longest an answer may be reused: a week (``--cache-ttl``).
MAX_CACHE_TTL_S = 7 * 86400


@dataclass(frozen=True, slots=True)
class AppChanges:
    """Options of `apps add` / `apps update`; None means 'leave as it is' (or the default)."""

    origins: tuple[str, ...] | None = None
    model: str | None = None
    allowed_models: tuple[str, ...] | None = None
    base_url: str | None = None
    system_prompt: str | None = None
    max_output_tokens: int | None = None
    log_content: str | None = None
    workflow: str | None = None
    fallback_models: tuple[str, ...] | None = None
    #: End users (sessions, OpenID Connect sign-in); "" clears the issuer and audience.
    session_max_ttl_s: int | None = None
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_user_claim: str | None = None
    #: The answer cache: seconds (0 turns it off), and whether temperature > 0 is cached.
    cache_ttl_s: int | None = None
    cache_nondeterministic: bool | None = None

    def validated(self, allowed_hosts: tuple[str, ...] = ()) -> AppChanges:
        validation.positive(self.max_output_tokens, "--max-output-tokens")
        _check_sign_in(self, allowed_hosts)
        if self.cache_ttl_s is not None and not 0 <= self.cache_ttl_s <= MAX_CACHE_TTL_S:
            raise InvalidRequest(f"--cache-ttl must be 0 (off) to {MAX_CACHE_TTL_S // 86400}d.")
        return AppChanges(
            cache_ttl_s=self.cache_ttl_s,
            cache_nondeterministic=self.cache_nondeterministic,
            session_max_ttl_s=self.session_max_ttl_s,
            oidc_issuer=self.oidc_issuer,
            oidc_audience=self.oidc_audience,
            oidc_user_claim=self.oidc_user_claim,
            origins=None
            if self.origins is None
            else tuple(dict.fromkeys(validation.origin(o) for o in self.origins)),
            model=None if self.model is None else validation.model_name(self.model),
            allowed_models=None
            if self.allowed_models is None
            else tuple(dict.fromkeys(validation.model_name(m) for m in self.allowed_models)),
            base_url=None
            if self.base_url is None
            else validation.base_url(self.base_url, allowed_hosts=allowed_hosts),
            system_prompt=self.system_prompt,
            max_output_tokens=self.max_output_tokens,
            log_content=None
            if self.log_content is None
            else validation.log_content(self.log_content),
            workflow=None if self.workflow is None else validation.workflow(self.workflow),
            fallback_models=None
            if self.fallback_models is None
            else tuple(dict.fromkeys(validation.model_name(m) for m in self.fallback_models)),
        )


def _check_sign_in(changes: AppChanges, allowed_hosts: tuple[str, ...]) -> None:
    ttl = changes.session_max_ttl_s
    if ttl is not None and not 1 <= ttl <= MAX_SESSION_TTL_S:
        raise InvalidRequest(f"--session-max-ttl must be 1 to {MAX_SESSION_TTL_S} seconds.")
    if changes.oidc_issuer:
        # The provider's keys are fetched from it: the upstream URL rules apply (https, no
        # private address unless allowed). The value is kept exactly: tokens name it so.
        validation.base_url(changes.oidc_issuer, allowed_hosts=allowed_hosts)
    if changes.oidc_audience is not None and (
        len(changes.oidc_audience) > 500 or not changes.oidc_audience.isprintable()
    ):
        raise InvalidRequest("--oidc-audience must be at most 500 printable characters.")
    claim = changes.oidc_user_claim
    if claim is not None and (not claim or len(claim) > 100 or not claim.isprintable()):
        raise InvalidRequest("--oidc-user-claim must be 1 to 100 printable characters.")


def _apply_sign_in(app: App, changes: AppChanges) -> None:
    if changes.session_max_ttl_s is not None:
        app.session_max_ttl_s = changes.session_max_ttl_s
    if changes.oidc_issuer is not None:
        app.oidc_issuer = changes.oidc_issuer or None
    if changes.oidc_audience is not None:
        app.oidc_audience = changes.oidc_audience or None
    if changes.oidc_user_claim is not None:
        app.oidc_user_claim = changes.oidc_user_claim
    if (app.oidc_issuer is None) != (app.oidc_audience is None):
        raise InvalidRequest("OpenID Connect sign-in needs both --oidc-issuer and --oidc-audience.")


@dataclass(frozen=True, slots=True)
class AppDefaults:
    model: str
    base_url: str
    max_output_tokens: int
    #: Hosts an app's --base-url may name over plain http or on a private address.
    allowed_upstream_hosts: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RegisteredApp:
    app: AppInfo
    token: IssuedToken


async def _get(session: AsyncSession, name: str) -> App:
    app = await app_rows.find_app_by_name(session, name)
    if app is None:
        raise NotFound(f"No app named {name!r}. See `orchestra apps list`.")
    return app


async def _info(session: AsyncSession, app: App) -> AppInfo:
    has_key = await key_rows.get_encrypted_key(session, app.id) is not None
    return AppInfo.of(app, has_provider_key=has_key)


def _apply_cache(app: App, changes: AppChanges) -> None:
    if changes.cache_ttl_s is not None:
        app.cache_ttl_s = changes.cache_ttl_s
    if changes.cache_nondeterministic is not None:
        app.cache_nondeterministic = changes.cache_nondeterministic


def _apply(app: App, changes: AppChanges) -> None:
    if changes.origins is not None:
        app.origins = list(changes.origins)
    if changes.model is not None:
        app.model = changes.model
    if changes.allowed_models is not None:
        app.allowed_models = list(changes.allowed_models)
    if changes.base_url is not None:
        app.base_url = changes.base_url
    if changes.system_prompt is not None:
        app.system_prompt = changes.system_prompt or None  # "" clears it
    if changes.max_output_tokens is not None:
        app.max_output_tokens = changes.max_output_tokens
    if changes.log_content is not None:
        app.log_content = changes.log_content
    if changes.workflow is not None:
        app.workflow = changes.workflow
    if changes.fallback_models is not None:
        app.fallback_models = list(changes.fallback_models)
    _apply_sign_in(app, changes)
    _apply_cache(app, changes)
    # The default model is always allowed.
    if app.model not in app.allowed_models:
        app.allowed_models = [app.model, *app.allowed_models]


async def register_app(
    db: Database,
    keyring: Keyring | None,
    *,
    name: str,
    changes: AppChanges,
    defaults: AppDefaults,
    provider_key: str | None = None,
) -> RegisteredApp:
    """Create the app, its first client token and (optionally) its provider key, all or nothing."""
    validation.app_name(name)
    changes = changes.validated(defaults.allowed_upstream_hosts)
    if provider_key is not None:
        provider_key = provider_keys.checked_key(provider_key)
        if keyring is None:
            raise ValueError("a keyring is needed to store a provider key")
    now = utcnow()
    app = App(
        id=new_app_id(),
        name=name,
        origins=[],
        model=defaults.model,
        allowed_models=[],
        base_url=defaults.base_url,
        max_output_tokens=defaults.max_output_tokens,
        created_at=now,
        updated_at=now,
    )
    _apply(app, changes)
    try:
        async with db.session() as session:
            if await app_rows.find_app_by_name(session, name) is not None:
                raise Conflict(f"An app named {name!r} already exists.")
            await app_rows.insert_app(session, app)
            issued = await tokens.insert_new_token(session, app_id=app.id, label="initial")
            if provider_key is not None and keyring is not None:
                await provider_keys.store_key(session, keyring, app_id=app.id, key=provider_key)
            info = await _info(session, app)
    except IntegrityError:
        raise Conflict(f"An app named {name!r} already exists.") from None
    return RegisteredApp(app=info, token=issued)


# Every change below bumps the app's auth epoch in its own transaction (see
# services/auth_epochs.py): cached verdicts on every gateway are looked up again within the
# polling interval, at once when an ``announcer`` on Redis is given.


async def _save_and_bump(session: AsyncSession, app: App) -> tuple[AppInfo, int]:
    app.updated_at = utcnow()
    session.add(app)
    await session.flush()
    epoch = await app_rows.bump_auth_epoch(session, app.id)
    return await _info(session, app), epoch


async def _announce(announcer: Announcer | None, app_id: str, epoch: int) -> None:
    if announcer is not None:
        await announcer.announce(app_id, epoch)


async def update_app(
    db: Database,
    name: str,
    changes: AppChanges,
    *,
    allowed_upstream_hosts: tuple[str, ...] = (),
    announcer: Announcer | None = None,
) -> AppInfo:
    changes = changes.validated(allowed_upstream_hosts)
    try:
        async with db.session() as session:
            app = await _get(session, name)
            _apply(app, changes)
            info, epoch = await _save_and_bump(session, app)
    except IntegrityError:
        raise Conflict(
            "Another app already signs in with this OpenID issuer and audience; "
            "an (issuer, audience) pair identifies one app."
        ) from None
    await _announce(announcer, info.id, epoch)
    return info


async def set_disabled(
    db: Database, name: str, *, disabled: bool, announcer: Announcer | None = None
) -> AppInfo:
    async with db.session() as session:
        app = await _get(session, name)
        app.disabled = disabled
        info, epoch = await _save_and_bump(session, app)
    await _announce(announcer, info.id, epoch)
    return info


async def remove_app(db: Database, name: str, *, announcer: Announcer | None = None) -> None:
    """Delete the app and, by cascade, its tokens, key and quota (its logs are kept)."""
    async with db.session() as session:
        app = await _get(session, name)
        app_id = app.id
        await app_rows.delete_app(session, app)
    await _announce(announcer, app_id, REMOVED)


async def get_app(db: Database, name: str) -> AppInfo:
    async with db.read() as session:
        return await _info(session, await _get(session, name))


async def list_apps(db: Database) -> list[AppInfo]:
    async with db.read() as session:
        return [await _info(session, app) for app in await app_rows.list_apps(session)]


async def app_id_of(session: AsyncSession, name: str) -> str:
    return (await _get(session, name)).id


async def workflows_in_use(db: Database) -> bool:
    """Whether any app answers through a workflow (the engine is worth starting early)."""
    async with db.read() as session:
        return any(app.workflow != "direct" for app in await app_rows.list_apps(session))
