"""Authenticating end users: Orchestra sessions and OpenID Connect access tokens.

Both are JWTs (``looks_like_jwt``); ``AuthCache`` sends them here, ``orc_`` tokens elsewhere.

- A session (HS256, ``iss`` orchestra) names its app in ``aud``. The app's entry (its
  context, secrets by kid, revocations, sign-in configuration) is loaded once and kept while
  the app's auth epoch is unchanged, so verifying a session is one HMAC and dict lookups: no
  database round trip per request, on any replica. A revocation, a rotation, an update or a
  disabled app bumps the epoch; every replica reloads within its epoch interval.
- Any other JWT is an OpenID Connect access token: its app is the one configured with its
  (``iss``, ``aud``) pair (a directory reloaded at most once a second on a miss), and
  ``OidcVerifier`` checks it against the provider's keys.

A disabled app's end users get 401 ``invalid_token`` (their credential is no longer good;
``app_disabled`` is for the app's own backend).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field, replace
from datetime import datetime

from gateway.core.errors import Unauthenticated
from gateway.identity.oidc import OidcConfig, OidcRef, OidcVerifier, peek_oidc
from gateway.security.keyring import Keyring
from gateway.security.sessions import peek_session, verify_session
from gateway.services.auth_epochs import AuthEpochs
from gateway.services.sessions import read_secret
from gateway.services.tokens import AppContext, app_context
from gateway.services.ttl_cache import TTLCache
from gateway.services.views import QuotaLimits
from gateway.storage import apps as app_rows
from gateway.storage import quotas as quota_rows
from gateway.storage import sessions as session_rows
from gateway.storage.database import Database
from gateway.storage.tables import utcnow

_INVALID = "The token is invalid for this gateway."
_REVOKED = "The session token has been revoked."
#: At most one reload of an app's entry, or of the OpenID directory, per this many seconds
#: because of a token naming something unknown (a forged token cannot load the database).
RELOAD_INTERVAL_S = 1.0
DIRECTORY_TTL_S = 30.0


@dataclass(frozen=True, slots=True)
class AppAuth:
    """What verifying an end user's token of one app needs, as of one auth epoch."""

    context: AppContext
    disabled: bool
    epoch: int
    secrets: dict[str, bytes]
    #: Sessions issued at or before these POSIX seconds are refused (all, or by user).
    revoked_all: int | None
    revoked_users: dict[str, int]
    oidc: OidcConfig | None
    loaded_at: float = field(default_factory=time.monotonic)


async def load_app_auth(db: Database, keyring: Keyring, app_id: str) -> AppAuth | None:
    now = utcnow()
    async with db.read() as session:
        app = await app_rows.find_app_by_id(session, app_id)
        if app is None:
            return None
        quota = await quota_rows.get_quota(session, app_id)
        secrets = await session_rows.secrets_of(session, app_id)
        revocations = await session_rows.live_revocations(session, app_id, now)
    usable = {
        row.kid: read_secret(keyring, row)
        for row in secrets
        if row.retired_at is None or (row.valid_until is not None and now < row.valid_until)
    }
    revoked_all: int | None = None
    revoked_users: dict[str, int] = {}
    for row in revocations:
        second = int(row.revoked_before.timestamp())
        if row.user is None:
            revoked_all = max(revoked_all or 0, second)
        else:
            revoked_users[row.user] = max(revoked_users.get(row.user, 0), second)
    oidc = None
    if app.oidc_issuer and app.oidc_audience:
        oidc = OidcConfig(app.oidc_issuer, app.oidc_audience, app.oidc_user_claim)
    return AppAuth(
        context=app_context("", app, QuotaLimits.of(quota)),
        disabled=app.disabled,
        epoch=app.auth_epoch,
        secrets=usable,
        revoked_all=revoked_all,
        revoked_users=revoked_users,
        oidc=oidc,
    )


class EndUserAuth:
    def __init__(
        self,
        db: Database,
        keyring: Keyring,
        epochs: AuthEpochs,
        *,
        ttl: float,
        oidc: OidcVerifier | None = None,
        leeway_s: float = 5.0,
    ) -> None:
        self._db = db
        self._keyring = keyring
        self._epochs = epochs
        self._oidc = oidc
        self._leeway = leeway_s
        self._apps: TTLCache[str, AppAuth | None] = TTLCache(ttl=max(ttl, 0.001))
        self._reload: set[str] = set()
        self._directory: dict[tuple[str, str], str] = {}
        self._directory_at = -float("inf")
        self._directory_lock = asyncio.Lock()
        self._still_current = self._current  # bound once: this runs on every request

    async def authenticate(self, presented: str, *, now: datetime | None = None) -> AppContext:
        now = now or utcnow()
        try:
            ref = peek_session(presented)
        except Unauthenticated:
            return await self._oidc_user(presented, now)
        auth = await self._app(ref.app_id)
        if auth is not None and ref.kid not in auth.secrets and self._may_reload(auth):
            self._reload.add(ref.app_id)  # a secret created a moment ago on another replica
            auth = await self._app(ref.app_id)
        if auth is None or auth.disabled:
            raise Unauthenticated(_INVALID)
        claims = verify_session(
            presented, secrets=auth.secrets, app_id=ref.app_id, now=now, leeway_s=self._leeway
        )
        issued = int(claims.issued_at.timestamp())
        if (auth.revoked_all is not None and issued <= auth.revoked_all) or issued <= (
            auth.revoked_users.get(claims.user, -1)
        ):
            raise Unauthenticated(_REVOKED)
        return replace(
            auth.context, user=claims.user, credential="session", bound_origin=claims.origin
        )

    async def _oidc_user(self, presented: str, now: datetime) -> AppContext:
        if self._oidc is None:
            raise Unauthenticated(_INVALID)
        ref = peek_oidc(presented)
        app_id = await self._oidc_app(ref)
        auth = None if app_id is None else await self._app(app_id)
        config = None if auth is None else auth.oidc
        if auth is None or config is None or not _names(config, ref):
            await self._refresh_directory()  # moved to another app, perhaps
            raise Unauthenticated(_INVALID)
        if auth.disabled:
            raise Unauthenticated(_INVALID)
        identity = await self._oidc.verify(presented, config, now=now)
        return replace(auth.context, user=identity.user, credential="oidc")

    async def _oidc_app(self, ref: OidcRef) -> str | None:
        if time.monotonic() - self._directory_at > DIRECTORY_TTL_S:
            await self._refresh_directory()
        for audience in ref.audiences:
            found = self._directory.get((ref.issuer, audience))
            if found is not None:
                return found
        await self._refresh_directory()
        return next(
            (
                found
                for audience in ref.audiences
                if (found := self._directory.get((ref.issuer, audience))) is not None
            ),
            None,
        )

    async def _refresh_directory(self) -> None:
        async with self._directory_lock:
            if time.monotonic() - self._directory_at < RELOAD_INTERVAL_S:
                return
            async with self._db.read() as session:
                self._directory = await session_rows.oidc_directory(session)
            self._directory_at = time.monotonic()

    def _may_reload(self, auth: AppAuth) -> bool:
        return time.monotonic() - auth.loaded_at >= RELOAD_INTERVAL_S

    async def _app(self, app_id: str) -> AppAuth | None:
        return await self._apps.get(app_id, lambda: self._load(app_id), self._still_current)

    def _current(self, auth: AppAuth | None) -> bool:
        if auth is None:
            return True
        app_id = auth.context.app_id
        return app_id not in self._reload and self._epochs.current(app_id) == auth.epoch

    async def _load(self, app_id: str) -> AppAuth | None:
        self._reload.discard(app_id)
        auth = await load_app_auth(self._db, self._keyring, app_id)
        if auth is not None:
            self._epochs.observe(app_id, auth.epoch)
        return auth


def _names(config: OidcConfig, ref: OidcRef) -> bool:
    return config.issuer == ref.issuer and config.audience in ref.audiences
