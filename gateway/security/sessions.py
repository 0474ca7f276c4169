"""Session tokens: short-lived JWTs for one user of one app, checked without a database.

An app's backend (holding the app's ``orc_`` token) asks for a session for one of its users;
the browser then holds only that session, never the app's token. A session is a JWS
(compact JWT) signed with HS256 under a 256-bit secret of the app:

    header   {"alg": "HS256", "typ": "JWT", "kid": <the secret's id>}
    payload  {"iss": "orchestra", "aud": <app id>, "sub": <user>, "iat", "exp", "jti",
              "origin"?: <the one browser origin it is bound to>}

Any replica verifies it with the app's secrets in memory; the ``kid`` names which secret, so
a rotated-out secret can stay in the mapping until the sessions it signed have expired.
Signing and verifying are PyJWT's (no hand-written crypto); this module only fixes the
algorithm (HS256 and nothing else), the claims that must be there and their types, and the
clock the expiry is read against (passed in, so every replica and test uses one ``now``).

Errors: a correctly signed session past its ``exp`` is ``TokenExpired`` (401
``token_expired``: the client should fetch a new one); anything else wrong (malformed,
tampered, another app's, an unknown ``kid``, another algorithm, a missing or ill-typed
claim, not yet valid) is ``Unauthenticated`` (401 ``invalid_token``) with one message.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets as random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson

from gateway.core import validation
from gateway.core.errors import (
    InvalidRequest,
    TokenExpired,
    Unauthenticated,
    UnprocessableRequest,
)
from gateway.core.users import MAX_USER_CHARS, is_valid_user

ISSUER = "orchestra"
ALGORITHM = "HS256"
#: Bytes of a new app secret (256 bits, the size of HS256's hash).
SECRET_BYTES = 32
#: A session token longer than this is refused before anything is decoded.
MAX_TOKEN_CHARS = 4096
#: The largest time claim accepted (the last second of year 9999).
_MAX_TIME = 253_402_300_799
_KID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
_REQUIRED = ["iss", "aud", "sub", "iat", "exp", "jti"]
_INVALID = "The session token is invalid."
_EXPIRED = "The session token has expired; get a new one."


@dataclass(frozen=True, slots=True)
class SessionSecret:
    kid: str
    secret: bytes

    def __repr__(self) -> str:  # the secret never reaches a log line through repr()
        return f"SessionSecret(kid={self.kid!r}, secret=<{len(self.secret)} bytes>)"


@dataclass(frozen=True, slots=True)
class MintedSession:
    token: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class SessionClaims:
    app_id: str
    user: str
    issued_at: datetime
    expires_at: datetime
    origin: str | None
    jti: str


class SessionRef(NamedTuple):
    """What a session names before it is verified: which app, and which of its secrets."""

    app_id: str
    kid: str


def new_session_secret() -> SessionSecret:
    """A fresh random secret and its id (the id is public: it travels in every token)."""
    return SessionSecret(kid=random.token_urlsafe(9), secret=random.token_bytes(SECRET_BYTES))


def looks_like_jwt(presented: str) -> bool:
    """Cheap triage of a bearer value: a JWT has exactly two dots, an ``orc_`` token none."""
    return presented.count(".") == 2 and not presented.startswith("orc_")


def _timestamp(now: datetime) -> int:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return int(now.timestamp())


def mint_session(
    *,
    app_id: str,
    user: str,
    secret: bytes,
    kid: str,
    ttl_s: int,
    now: datetime,
    origin: str | None = None,
) -> MintedSession:
    """Sign a session for ``user`` of ``app_id``, valid for ``ttl_s`` seconds from ``now``.

    ``user`` and ``origin`` come from the app's backend: a bad one is a 422. ``secret`` and
    ``kid`` come from the gateway's own storage: a bad one is a programming error.
    """
    import jwt  # on first use: the app-token path never loads PyJWT (~4 MB resident)

    if not is_valid_user(user):
        raise UnprocessableRequest(
            f"user must be 1 to {MAX_USER_CHARS} printable characters "
            "(no control, format or separator characters other than the space)."
        )
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, int) or ttl_s < 1:
        raise UnprocessableRequest("ttl_s must be a positive whole number of seconds.")
    if len(secret) < SECRET_BYTES:
        raise ValueError(f"a session secret must be at least {SECRET_BYTES} bytes")
    if not _KID.fullmatch(kid):
        raise ValueError("a session secret id is 1-64 URL-safe characters")
    if not app_id or not app_id.isprintable():
        raise ValueError("an app id is non-empty and printable")
    issued = _timestamp(now)
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": app_id,
        "sub": user,
        "iat": issued,
        "exp": issued + ttl_s,
        "jti": random.token_urlsafe(16),
    }
    if origin is not None:
        try:
            claims["origin"] = validation.origin(origin)
        except InvalidRequest as exc:
            raise UnprocessableRequest(exc.message) from None
    token = jwt.encode(claims, secret, algorithm=ALGORITHM, headers={"kid": kid, "typ": "JWT"})
    return MintedSession(token=token, expires_at=datetime.fromtimestamp(issued + ttl_s, UTC))


def _segment_json(segment: str) -> dict[str, Any] | None:
    if not _SEGMENT.fullmatch(segment):
        return None
    try:
        value = orjson.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (binascii.Error, ValueError):  # orjson.JSONDecodeError is a ValueError
        return None
    return value if isinstance(value, dict) else None


def peek_session(token: str) -> SessionRef:
    """The app and secret a session names, read WITHOUT verifying it (to find the secret).

    Refuses anything that is not a compact three-part JWS with ``alg`` HS256, ``typ`` JWT, a
    well-formed ``kid`` and a string ``aud``: ``none``, RS256 and the rest never get further.
    """
    if len(token) > MAX_TOKEN_CHARS or not looks_like_jwt(token):
        raise Unauthenticated(_INVALID)
    header_part, payload_part, signature_part = token.split(".")
    header = _segment_json(header_part)
    if (
        header is None
        or header.get("alg") != ALGORITHM
        or header.get("typ") != "JWT"
        or not isinstance(kid := header.get("kid"), str)
        or not _KID.fullmatch(kid)
        or not _SEGMENT.fullmatch(signature_part)
    ):
        raise Unauthenticated(_INVALID)
    payload = _segment_json(payload_part)
    app_id = payload.get("aud") if payload is not None else None
    if not isinstance(app_id, str) or not app_id:
        raise Unauthenticated(_INVALID)
    return SessionRef(app_id=app_id, kid=kid)


def _int_claim(payload: Mapping[str, Any], name: str) -> int:
    value = payload.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_TIME:
        raise Unauthenticated(_INVALID)
    return value


def _claims(payload: Mapping[str, Any], app_id: str) -> SessionClaims:
    user, jti, origin = payload.get("sub"), payload.get("jti"), payload.get("origin")
    if (
        payload.get("aud") != app_id  # a string equal to the app, not a list holding it
        or not is_valid_user(user)
        or not isinstance(jti, str)
        or not 1 <= len(jti) <= 64
        or (origin is not None and not isinstance(origin, str))
    ):
        raise Unauthenticated(_INVALID)
    assert isinstance(user, str)  # is_valid_user said so
    return SessionClaims(
        app_id=app_id,
        user=user,
        issued_at=datetime.fromtimestamp(_int_claim(payload, "iat"), UTC),
        expires_at=datetime.fromtimestamp(_int_claim(payload, "exp"), UTC),
        origin=origin,
        jti=jti,
    )


def verify_session(
    token: str,
    *,
    secrets: Mapping[str, bytes],
    app_id: str,
    now: datetime,
    leeway_s: float = 0,
) -> SessionClaims:
    """The claims of a session of ``app_id`` signed by one of ``secrets`` (by kid), or raise.

    ``leeway_s`` tolerates clock skew between replicas on ``exp`` and ``iat``.
    """
    import jwt  # on first use: the app-token path never loads PyJWT (~4 MB resident)

    ref = peek_session(token)
    secret = secrets.get(ref.kid)
    if ref.app_id != app_id or secret is None:
        raise Unauthenticated(_INVALID)
    try:
        payload = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=app_id,
            issuer=ISSUER,
            # The times are checked below against the caller's clock, after the signature.
            options={
                "require": _REQUIRED,
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
            },
        )
    except jwt.InvalidTokenError:
        raise Unauthenticated(_INVALID) from None
    claims = _claims(payload, app_id)
    at = _timestamp(now)
    issued, expires = _int_claim(payload, "iat"), _int_claim(payload, "exp")
    nbf = _int_claim(payload, "nbf") if "nbf" in payload else issued
    if issued > at + leeway_s or nbf > at + leeway_s or expires <= issued:
        raise Unauthenticated(_INVALID)
    if at >= expires + leeway_s:
        raise TokenExpired(_EXPIRED)
    return claims
