"""End-user sessions: mint one (with the app's token), revoke them, rotate the app's secret.

A session is a short-lived HS256 JWT (``gateway.security.sessions``) for one user of one app,
so the browser never holds the app's ``orc_`` token. Secrets and revocations live in the
database and reach every gateway through the app's auth epoch: each change here bumps it in
the same transaction, so every replica reloads the app's entry within its epoch interval (at
once with Redis) and no session is checked against the database per request.

Revocation is by issue time, in whole seconds (a JWT's ``iat``): a session issued at or
before the second of the revocation is refused, so one minted in that same second after the
revocation is refused too (its backend simply mints again a second later).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.core import validation
from gateway.core.errors import (
    InvalidRequest,
    MasterKeyError,
    NotFound,
    StorageUnavailable,
    UnprocessableRequest,
)
from gateway.security.keyring import Keyring
from gateway.security.sessions import MintedSession, mint_session, new_session_secret
from gateway.services.auth_epochs import Announcer
from gateway.services.tokens import AppContext
from gateway.storage import apps as app_rows
from gateway.storage import sessions as session_rows
from gateway.storage.database import Database
from gateway.storage.tables import App, SessionRevocation, SessionSecret, utcnow

DEFAULT_TTL_S = 900
#: How a session secret is named in the keyring's errors.
KEYRING_WHAT = "session secret"
#: The largest ``session_max_ttl_s`` an app may have: a revocation is kept this long.
MAX_SESSION_TTL_S = 86_400
#: A retired secret verifies this much longer than the longest session it signed (skew).
RETIRED_SECRET_MARGIN_S = 60


@dataclass(frozen=True, slots=True)
class RevocationReport:
    app_name: str
    user: str | None
    revoked_before: datetime


@dataclass(frozen=True, slots=True)
class RotationReport:
    app_name: str
    kid: str
    retired: int
    revoked: bool


def retired_secret_valid_until(app: App, now: datetime) -> datetime:
    """Until when a secret retired ``now`` verifies: the longest session it can have signed,
    plus the clock skew a session's expiry is checked with."""
    return now + timedelta(seconds=app.session_max_ttl_s + RETIRED_SECRET_MARGIN_S)


def encode_secret(secret: bytes) -> str:
    return base64.urlsafe_b64encode(secret).decode()


def decode_secret(text: str) -> bytes:
    return base64.urlsafe_b64decode(text.encode())


def read_secret(keyring: Keyring, row: SessionSecret) -> bytes:
    """The secret a stored row holds (MasterKeyError, naming a session secret, if unreadable)."""
    return decode_secret(keyring.decrypt(row.ciphertext, app_id=row.app_id, what=KEYRING_WHAT))


def _new_secret_row(keyring: Keyring, app_id: str, now: datetime) -> tuple[SessionSecret, bytes]:
    fresh = new_session_secret()
    row = SessionSecret(
        app_id=app_id,
        kid=fresh.kid,
        ciphertext=keyring.encrypt(encode_secret(fresh.secret), app_id=app_id),
        created_at=now,
    )
    return row, fresh.secret


def _checked_origin(origin: str | None, app_origins: tuple[str, ...]) -> str | None:
    if origin is None:
        return None
    try:
        normalised = validation.origin(origin)
    except InvalidRequest as exc:
        raise UnprocessableRequest(exc.message) from None
    if normalised not in app_origins:
        raise UnprocessableRequest(f"origin must be one of the app's origins; {origin!r} is not.")
    return normalised


async def _signing_secret(
    db: Database, keyring: Keyring, app_id: str
) -> tuple[App, str, bytes, int | None]:
    """The app, the kid and secret new sessions are signed with, and the app's new auth
    epoch if the secret had to be created (the first session of the app)."""
    async with db.read() as session:
        app = await app_rows.find_app_by_id(session, app_id)
        rows = [] if app is None else await session_rows.secrets_of(session, app_id)
    current = next((row for row in rows if row.retired_at is None), None)
    if app is not None and current is not None:
        return (
            app,
            current.kid,
            read_secret(keyring, current),
            None,
        )
    async with db.session() as session:
        app = await session_rows.lock_app(session, app_id)
        if app is None:
            raise StorageUnavailable("The app was removed while a session was minted.")
        rows = await session_rows.secrets_of(session, app_id)
        current = next((row for row in rows if row.retired_at is None), None)
        if current is not None:  # created meanwhile by another gateway
            secret = read_secret(keyring, current)
            return app, current.kid, secret, None
        row, secret = _new_secret_row(keyring, app_id, utcnow())
        await session_rows.insert_secret(session, row)
        epoch = await app_rows.bump_auth_epoch(session, app_id)
        return app, row.kid, secret, epoch


async def mint(
    db: Database,
    keyring: Keyring,
    ctx: AppContext,
    *,
    user: str,
    ttl_s: int = DEFAULT_TTL_S,
    origin: str | None = None,
    announcer: Announcer | None = None,
) -> MintedSession:
    """A session for ``user`` of the calling app (``ctx`` from its ``orc_`` token)."""
    app, kid, secret, epoch = await _signing_secret(db, keyring, ctx.app_id)
    if epoch is not None and announcer is not None:
        await announcer.announce(app.id, epoch)
    if isinstance(ttl_s, int) and not isinstance(ttl_s, bool) and ttl_s > app.session_max_ttl_s:
        raise UnprocessableRequest(
            f"ttl_s may not exceed this app's session_max_ttl_s ({app.session_max_ttl_s})."
        )
    return mint_session(
        app_id=app.id,
        user=user,
        secret=secret,
        kid=kid,
        ttl_s=ttl_s,
        now=utcnow(),
        origin=_checked_origin(origin, tuple(app.origins)),
    )


async def _app_named(db: Database, app_name: str) -> App:
    async with db.read() as session:
        app = await app_rows.find_app_by_name(session, app_name)
    if app is None:
        raise NotFound(f"No app named {app_name!r}. See `orchestra apps list`.")
    return app


def _revocation(app_id: str, user: str | None, now: datetime) -> SessionRevocation:
    return SessionRevocation(
        app_id=app_id,
        user=user,
        revoked_before=now,
        expires_at=now + timedelta(seconds=MAX_SESSION_TTL_S + 60),
    )


async def revoke_sessions(
    db: Database,
    *,
    app_name: str,
    user: str | None,
    announcer: Announcer | None = None,
) -> RevocationReport:
    """End every session of ``user`` (every session of the app when None), on every gateway
    within its auth-epoch interval. OpenID Connect tokens issued before now are refused too."""
    app = await _app_named(db, app_name)
    now = utcnow()
    async with db.session() as session:
        await session_rows.prune_revocations(session, app.id, now)
        await session_rows.insert_revocation(session, _revocation(app.id, user, now))
        epoch = await app_rows.bump_auth_epoch(session, app.id)
    if announcer is not None:
        await announcer.announce(app.id, epoch)
    return RevocationReport(app_name=app.name, user=user, revoked_before=now)


async def rotate_secret(
    db: Database,
    keyring: Keyring,
    *,
    app_name: str,
    revoke: bool = False,
    announcer: Announcer | None = None,
) -> RotationReport:
    """Sign new sessions with a new secret. The old one keeps verifying the sessions it signed
    until they expire (the ``session_max_ttl_s`` in force now, whatever it becomes later),
    unless ``revoke``: then it is deleted and every session of the app ends."""
    app = await _app_named(db, app_name)
    now = utcnow()
    async with db.session() as session:
        locked = await session_rows.lock_app(session, app.id)
        if locked is None:
            raise NotFound(f"No app named {app_name!r}. See `orchestra apps list`.")
        old = [
            row for row in await session_rows.secrets_of(session, app.id) if row.retired_at is None
        ]
        if revoke:
            await session_rows.delete_secrets(session, app.id)
            await session_rows.insert_revocation(session, _revocation(app.id, None, now))
        else:
            await session_rows.delete_secrets(session, app.id, expired_at=now)
            await session_rows.retire_secrets(
                session, app.id, now, valid_until=retired_secret_valid_until(locked, now)
            )
        row, _ = _new_secret_row(keyring, app.id, now)
        await session_rows.insert_secret(session, row)
        epoch = await app_rows.bump_auth_epoch(session, app.id)
    if announcer is not None:
        await announcer.announce(app.id, epoch)
    return RotationReport(app_name=app.name, kid=row.kid, retired=len(old), revoked=revoke)


async def reencrypt_secrets(session: AsyncSession, keyring: Keyring) -> int:
    """Re-encrypt every stored session secret under the keyring's first key (in the caller's
    unit of work); how many. One that cannot be read is named, with its app, and stops it."""
    rows = await session_rows.all_secrets(session)
    for row, app_name in rows:
        try:
            read_secret(keyring, row)
        except MasterKeyError as error:
            raise MasterKeyError(
                f"{error.message} It is the session secret {row.kid} of the app "
                f"{app_name!r}. Nothing was re-encrypted. Replace it (this ends the app's "
                f"sessions) with `orchestra sessions rotate-secret {app_name} --revoke`, "
                "then run this again."
            ) from None
        row.ciphertext = keyring.rotate(row.ciphertext, what=KEYRING_WHAT)
        session.add(row)
    await session.flush()
    return len(rows)
