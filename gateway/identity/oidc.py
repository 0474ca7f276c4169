"""OpenID Connect access tokens: verify a provider's JWT against its published keys.

An app configured with an (issuer, audience, user claim) lets a browser send the access token
its OpenID provider gave the user. ``OidcVerifier`` (one per process) checks it:

1. The header: ``alg`` is RS256, ES256 or EdDSA (``none``, HS256 and the rest are refused
   before any key is looked at, so an HS256 token "signed" with the provider's public key,
   the classic algorithm confusion, never reaches a verifier) and names a ``kid``.
2. The key: from the issuer's cached key set (``jwks.py``). A ``kid`` not in the cache makes
   one refetch of ``{issuer}/.well-known/openid-configuration`` (whose ``issuer`` must equal
   the configured one) and its ``jwks_uri``: at most once per ``refetch_interval_s`` per
   issuer (every ``retry_interval_s`` after a failed attempt), and single-flight, so a burst
   of tokens naming unknown kids costs the provider one fetch. A key set older than
   ``max_key_age_s`` is refreshed on the next token (a key the provider withdrew stops being
   accepted); if that refresh fails the cached keys keep working. The key must be of the
   token's algorithm (``kty``, ``crv`` and ``alg`` agree with the header).
3. The signature (PyJWT), then ``iss`` equal to the issuer, ``aud`` (a string or a list)
   holding the audience, and the times against the caller's ``now`` with ``leeway_s``
   (30 s): ``exp`` (required), ``iat`` (required) and ``nbf`` (if present).
4. The user: the configured claim (default ``sub``), a string of 1-128 printable characters.

Errors: a correctly signed token past ``exp`` is ``TokenExpired`` (401 ``token_expired``);
anything forged or wrong is ``Unauthenticated`` (401 ``invalid_token``); no key for the
token's ``kid`` because the provider cannot be fetched (unreachable, not 200, too large,
not JSON, another issuer, refused by the SSRF guard) is ``IdentityProviderUnavailable``
(503 ``identity_provider_unavailable``, ``retry_after`` = when the next fetch may be tried).

The fetcher is passed in (``gateway.upstream.fetch.GuardedFetcher`` in the gateway), so this
module never opens a connection of its own and the SSRF rules apply to every fetch.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import orjson

from gateway.core.errors import (
    IdentityProviderUnavailable,
    TokenExpired,
    Unauthenticated,
    UpstreamError,
)
from gateway.core.users import is_valid_user
from gateway.identity.jwks import ALGORITHMS, JwksError, parse_jwks

if TYPE_CHECKING:  # PyJWT (and the asymmetric crypto it loads) is imported on first use:
    import jwt  # the app-token path never pays its memory (~4 MB) or import time

#: A bearer value longer than this is refused before anything is decoded.
MAX_TOKEN_CHARS = 16 * 1024
_INVALID = "The access token is invalid."
_EXPIRED = "The access token has expired; sign in again."
_DISCOVERY_PATH = "/.well-known/openid-configuration"


class Fetcher(Protocol):
    """GETs a small document; raises an ``UpstreamError`` on any failure."""

    async def get(self, url: str, *, limit: int, timeout: float) -> bytes: ...


@dataclass(frozen=True, slots=True)
class OidcConfig:
    """One app's sign-in configuration."""

    issuer: str
    audience: str
    user_claim: str = "sub"


@dataclass(frozen=True, slots=True)
class OidcIdentity:
    issuer: str
    audience: str
    user: str


class OidcRef(NamedTuple):
    """What a token claims before it is verified: its issuer and audiences (to find the app)."""

    issuer: str
    audiences: tuple[str, ...]


@dataclass(slots=True)
class _Provider:
    """What is known of one issuer: its keys, and when they were fetched or tried."""

    keys: dict[str, jwt.PyJWK] = field(default_factory=dict)
    fetched_at: float | None = None
    attempted_at: float | None = None
    failure: str | None = None
    #: Completed fetch attempts; a waiter that sees it change knows someone else fetched.
    generation: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def _unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    import jwt  # on first use (see the module top)

    if len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
        raise Unauthenticated(_INVALID)
    try:
        decoded = jwt.api_jwt.decode_complete(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise Unauthenticated(_INVALID) from None
    return decoded["header"], decoded["payload"]


def peek_oidc(token: str) -> OidcRef:
    """The issuer and audiences a token claims, read WITHOUT verifying it."""
    _, payload = _unverified(token)
    issuer, audience = payload.get("iss"), payload.get("aud")
    audiences = (audience,) if isinstance(audience, str) else audience
    if (
        not isinstance(issuer, str)
        or not isinstance(audiences, list | tuple)
        or not all(isinstance(a, str) for a in audiences)
    ):
        raise Unauthenticated(_INVALID)
    return OidcRef(issuer=issuer, audiences=tuple(audiences))


def _time(payload: dict[str, Any], name: str) -> float:
    value = payload.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise Unauthenticated(_INVALID)
    return float(value)


class OidcVerifier:
    """Verifies OpenID Connect access tokens for any number of configured issuers."""

    def __init__(
        self,
        fetcher: Fetcher,
        *,
        leeway_s: float = 30.0,
        refetch_interval_s: float = 60.0,
        retry_interval_s: float = 5.0,
        max_key_age_s: float = 3600.0,
        fetch_timeout_s: float = 5.0,
        max_document_bytes: int = 1024 * 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetcher = fetcher
        self._leeway = leeway_s
        self._refetch_interval = refetch_interval_s
        self._retry_interval = retry_interval_s
        self._max_key_age = max_key_age_s
        self._timeout = fetch_timeout_s
        self._limit = max_document_bytes
        self._clock = clock
        self._providers: dict[str, _Provider] = {}

    async def verify(self, token: str, config: OidcConfig, *, now: datetime) -> OidcIdentity:
        import jwt  # on first use (see the module top)

        header, _ = _unverified(token)
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in ALGORITHMS or not isinstance(kid, str):
            raise Unauthenticated(_INVALID)
        key = await self._key(config.issuer, kid)
        if key.algorithm_name != alg:
            raise Unauthenticated(_INVALID)
        try:
            payload = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=config.audience,
                issuer=config.issuer,
                options={
                    "require": ["iss", "aud", "exp", "iat"],
                    # The times are checked below against the caller's clock.
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "enforce_minimum_key_length": True,
                },
            )
        except jwt.PyJWTError:
            raise Unauthenticated(_INVALID) from None
        self._check_times(payload, now)
        user = payload.get(config.user_claim)
        if not is_valid_user(user):
            raise Unauthenticated(_INVALID)
        assert isinstance(user, str)  # is_valid_user said so
        return OidcIdentity(issuer=config.issuer, audience=config.audience, user=user)

    def _check_times(self, payload: dict[str, Any], now: datetime) -> None:
        latest = now.timestamp() + self._leeway  # the latest moment still "now"
        expires, issued = _time(payload, "exp"), _time(payload, "iat")
        not_before = _time(payload, "nbf") if "nbf" in payload else issued
        if issued > latest or not_before > latest:
            raise Unauthenticated(_INVALID)
        if now.timestamp() >= expires + self._leeway:
            raise TokenExpired(_EXPIRED)

    # --- keys --------------------------------------------------------------------------------

    def _may_fetch(self, provider: _Provider, at: float) -> bool:
        if provider.attempted_at is None:
            return True
        interval = self._retry_interval if provider.failure else self._refetch_interval
        return at - provider.attempted_at >= interval

    def _stale(self, provider: _Provider, at: float) -> bool:
        """An old key set due for a refresh: tried at most once per refetch interval, even
        after a failure (the cached keys still serve, so no token needs to wait for it)."""
        if provider.fetched_at is None or at - provider.fetched_at < self._max_key_age:
            return False
        return provider.attempted_at is None or at - provider.attempted_at >= self._refetch_interval

    async def _key(self, issuer: str, kid: str) -> jwt.PyJWK:
        provider = self._providers.setdefault(issuer, _Provider())
        at = self._clock()
        key = provider.keys.get(kid)
        fetching = provider.lock.locked()
        if key is None and (fetching or self._may_fetch(provider, at)):
            # Unknown kid: wait for the fetch in flight, or make one if it is time.
            await self._refresh(provider, issuer)
            key = provider.keys.get(kid)
        elif key is not None and not fetching and self._stale(provider, at):
            # A known kid in an old set: refresh it (a withdrawn key stops here); if the
            # provider cannot be reached the cached key keeps serving.
            await self._refresh(provider, issuer)
            key = provider.keys.get(kid)
        if key is not None:
            return key
        if provider.failure is not None:
            assert provider.attempted_at is not None
            wait = provider.attempted_at + self._retry_interval - self._clock()
            raise IdentityProviderUnavailable(provider.failure, retry_after=max(1.0, wait))
        raise Unauthenticated(_INVALID)

    async def _refresh(self, provider: _Provider, issuer: str) -> None:
        """Fetch the issuer's keys once, however many tokens are waiting for them."""
        seen = provider.generation
        async with provider.lock:
            if provider.generation != seen:
                return  # fetched (or tried) while this one waited: use that result
            previous, provider.attempted_at = provider.attempted_at, self._clock()
            try:
                keys = await self._fetch_keys(issuer)
            except IdentityProviderUnavailable as exc:
                provider.failure = exc.message
            except asyncio.CancelledError:
                provider.attempted_at = previous  # not an attempt: the next waiter tries
                raise
            else:
                provider.keys, provider.failure = keys, None
                provider.fetched_at = provider.attempted_at
            provider.generation += 1

    async def _get(self, issuer: str, url: str) -> bytes:
        try:
            return await self._fetcher.get(url, limit=self._limit, timeout=self._timeout)
        except UpstreamError as exc:
            raise IdentityProviderUnavailable(
                f"The identity provider {issuer} cannot be used: {exc.message}"
            ) from None

    async def _fetch_keys(self, issuer: str) -> dict[str, jwt.PyJWK]:
        body = await self._get(issuer, issuer.rstrip("/") + _DISCOVERY_PATH)
        try:
            discovery = orjson.loads(body)
        except ValueError:
            discovery = None
        if not isinstance(discovery, dict) or discovery.get("issuer") != issuer:
            raise IdentityProviderUnavailable(
                f"The discovery document of {issuer} does not name it as its issuer; refused."
            )
        jwks_uri = discovery.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise IdentityProviderUnavailable(
                f"The discovery document of {issuer} has no jwks_uri."
            )
        try:
            return parse_jwks(await self._get(issuer, jwks_uri))
        except JwksError as exc:
            raise IdentityProviderUnavailable(
                f"The identity provider {issuer} sent an unusable key set ({exc})."
            ) from None
