"""OpenID Connect access tokens against a real local provider (tests/support/oidc_provider.py).

The provider is a real HTTP server on 127.0.0.1 serving discovery and JWKS for keys this
test generates; the verifier reaches it through the gateway's guarded fetcher (the SSRF rules
and the wire client), so the fetch counts below are real requests.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import threading
import time
from datetime import UTC, datetime
from typing import Any

import jwt
import orjson
import pytest

from gateway.core.errors import IdentityProviderUnavailable, TokenExpired, Unauthenticated
from gateway.identity.oidc import OidcConfig, OidcIdentity, OidcVerifier, peek_oidc
from gateway.upstream import egress
from gateway.upstream.fetch import GuardedFetcher
from tests.gateway.identity.conftest import FakeClock
from tests.support.oidc_provider import AUDIENCE, OidcProvider, SigningKey

pytestmark = pytest.mark.anyio


def _now() -> datetime:
    return datetime.now(UTC)


def _config(provider: OidcProvider, **overrides: Any) -> OidcConfig:
    return OidcConfig(**({"issuer": provider.issuer, "audience": AUDIENCE} | overrides))


def _verifier(
    fetcher: GuardedFetcher, clock: FakeClock | None = None, **kwargs: Any
) -> OidcVerifier:
    if clock is not None:
        kwargs["clock"] = clock
    return OidcVerifier(fetcher, **kwargs)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def _invalid(verifier: OidcVerifier, token: str, config: OidcConfig) -> None:
    with pytest.raises(Unauthenticated) as caught:
        await verifier.verify(token, config, now=_now())
    assert type(caught.value) is Unauthenticated
    assert (caught.value.code, caught.value.http_status) == ("invalid_token", 401)


async def _unavailable(
    verifier: OidcVerifier, token: str, config: OidcConfig
) -> IdentityProviderUnavailable:
    with pytest.raises(IdentityProviderUnavailable) as caught:
        await verifier.verify(token, config, now=_now())
    assert (caught.value.code, caught.value.http_status) == ("identity_provider_unavailable", 503)
    assert caught.value.retry_after is not None
    return caught.value


# --- valid tokens -----------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
async def test_a_valid_token_of_each_algorithm_is_accepted(
    provider: OidcProvider, fetcher: GuardedFetcher, alg: str
) -> None:
    key = provider.add_key(alg)
    identity = await _verifier(fetcher).verify(
        provider.token(key, sub="alice"), _config(provider), now=_now()
    )
    assert identity == OidcIdentity(issuer=provider.issuer, audience=AUDIENCE, user="alice")
    assert (provider.discovery_fetches, provider.jwks_fetches) == (1, 1)


async def test_keys_are_cached_across_tokens(
    provider: OidcProvider, fetcher: GuardedFetcher
) -> None:
    key = provider.add_key()
    verifier = _verifier(fetcher)
    for user in ("a", "b", "c"):
        identity = await verifier.verify(
            provider.token(key, sub=user), _config(provider), now=_now()
        )
        assert identity.user == user
    assert provider.jwks_fetches == 1


async def test_an_audience_list_holding_ours_is_accepted(
    provider: OidcProvider, fetcher: GuardedFetcher
) -> None:
    key = provider.add_key()
    token = provider.token(key, aud=["account", AUDIENCE])
    assert (await _verifier(fetcher).verify(token, _config(provider), now=_now())).user == "user-1"


async def test_the_user_is_the_configured_claim(
    provider: OidcProvider, fetcher: GuardedFetcher
) -> None:
    key = provider.add_key()
    verifier = _verifier(fetcher)
    config = _config(provider, user_claim="preferred_username")
    token = provider.token(key, preferred_username="jürgen")
    assert (await verifier.verify(token, config, now=_now())).user == "jürgen"
    for bad in (None, "", "a\nb", "a\u202eb", "x" * 129, 42, ["alice"]):
        await _invalid(verifier, provider.token(key, preferred_username=bad), config)


async def test_peek_reads_issuer_and_audiences_unverified(provider: OidcProvider) -> None:
    key = SigningKey.generate("ES256")
    assert peek_oidc(provider.token(key)) == (provider.issuer, (AUDIENCE,))
    assert peek_oidc(provider.token(key, aud=["a", "b"])) == (provider.issuer, ("a", "b"))
    for token in ("a.b", provider.token(key, iss=None), provider.token(key, aud=[1])):
        with pytest.raises(Unauthenticated):
            peek_oidc(token)


# --- claims -----------------------------------------------------------------------------------


async def test_a_wrong_audience_is_refused(provider: OidcProvider, fetcher: GuardedFetcher) -> None:
    key = provider.add_key()
    verifier = _verifier(fetcher)
    await _invalid(verifier, provider.token(key, aud="another-api"), _config(provider))
    await _invalid(verifier, provider.token(key, aud=["account"]), _config(provider))
    await _invalid(verifier, provider.token(key, aud=None), _config(provider))


async def test_a_wrong_issuer_is_refused(provider: OidcProvider, fetcher: GuardedFetcher) -> None:
    key = provider.add_key()
    verifier = _verifier(fetcher)
    await _invalid(verifier, provider.token(key, iss="https://evil.example"), _config(provider))
    await _invalid(verifier, provider.token(key, iss=provider.issuer + "/"), _config(provider))
    await _invalid(verifier, provider.token(key, iss=None), _config(provider))


async def test_an_expired_token_is_token_expired(
    provider: OidcProvider, fetcher: GuardedFetcher
) -> None:
    key = provider.add_key()
    verifier = _verifier(fetcher)
    now = int(time.time())
    token = provider.token(key, iat=now - 600, exp=now - 60)
    with pytest.raises(TokenExpired) as caught:
        await verifier.verify(token, _config(provider), now=_now())
    assert (caught.value.code, caught.value.http_status) == ("token_expired", 401)
    # Within the 30 s leeway it is still accepted (clock skew between provider and gateway).
    recent = provider.token(key, iat=now - 600, exp=now - 20)
    assert (await verifier.verify(recent, _config(provider), now=_now())).user == "user-1"


async def test_an_expired_forgery_is_invalid_not_expired(
    provider: OidcProvider, fetcher: GuardedFetcher
) -> None:
    published = provider.add_key()
    forger = SigningKey.generate("RS256", kid=published.kid)
    now = int(time.time())
    await _invalid(_verifier(fetcher), provider.token(forger, exp=now - 600), _config(provider))


async def test_nbf_in_the_future_is_refused_unless_within_leeway(
    provider: OidcProvider, fetcher: GuardedFetcher
) -> None:
    key = provider.add_key()
    verifier = _verifier(fetcher)
    now = int(time.time())
    await _invalid(verifier, provider.token(key, nbf=now + 120), _config(provider))
    accepted = await verifier.verify(
        provider.token(key, nbf=now + 20), _config(provider), now=_now()
    )
    assert accepted.user == "user-1"


async def test_iat_in_the_future_is_refused(
    provider: OidcProvider, fetcher: GuardedFetcher
) -> None:
    key = provider.add_key()
    now = int(time.time())
    await _invalid(_verifier(fetcher), provider.token(key, iat=now + 120), _config(provider))


@pytest.mark.parametrize("claim", ["exp", "iat"])
async def test_missing_times_are_refused(
    provider: OidcProvider, fetcher: GuardedFetcher, claim: str
) -> None:
    key = provider.add_key()
    await _invalid(_verifier(fetcher), provider.token(key, **{claim: None}), _config(provider))


@pytest.mark.parametrize("value", ["soon", True, float("inf"), [1]])
async def test_ill_typed_times_are_refused(
    provider: OidcProvider, fetcher: GuardedFetcher, value: object
) -> None:
    key = provider.add_key()
    token = key.sign(provider.claims(exp=value))
    await _invalid(_verifier(fetcher), token, _config(provider))


# --- forgeries --------------------------------------------------------------------------------


async def test_alg_none_is_refused(provider: OidcProvider, fetcher: GuardedFetcher) -> None:
    key = provider.add_key()
    claims = provider.claims()
    for alg in ("none", "None", "NONE"):
        header = _b64(orjson.dumps({"alg": alg, "kid": key.kid, "typ": "JWT"}))
        unsigned = f"{header}.{_b64(orjson.dumps(claims))}."
        await _invalid(_verifier(fetcher), unsigned, _config(provider))
    await _invalid(_verifier(fetcher), jwt.encode(claims, "", algorithm="none"), _config(provider))


async def test_hs256_signed_with_the_public_key_is_refused(
    provider: OidcProvider, fetcher: GuardedFetcher
) -> None:
    # The classic algorithm confusion: a verifier that lets the token pick the algorithm
    # would HMAC-check this with the provider's public key, which everyone can download.
    key = provider.add_key("RS256")
    verifier = _verifier(fetcher)
    assert (await verifier.verify(provider.token(key), _config(provider), now=_now())).user
    header = _b64(orjson.dumps({"alg": "HS256", "kid": key.kid, "typ": "JWT"}))
    signing_input = f"{header}.{_b64(orjson.dumps(provider.claims(sub='admin')))}"
    for secret in (key.public_pem(), orjson.dumps(key.public_jwk())):
        signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        await _invalid(verifier, f"{signing_input}.{_b64(signature)}", _config(provider))


async def test_a_key_of_another_algorithm_than_the_header_is_refused(
    provider: OidcProvider, fetcher: GuardedFetcher
) -> None:
    rsa_key = provider.add_key("RS256")
    ec_key = provider.add_key("ES256")
    verifier = _verifier(fetcher)
    # Signed with the EC key, but naming the RSA key's kid (and the other way round).
    await _invalid(
        verifier, ec_key.sign(provider.claims(), headers={"kid": rsa_key.kid}), _config(provider)
    )
    await _invalid(
        verifier, rsa_key.sign(provider.claims(), headers={"kid": ec_key.kid}), _config(provider)
    )
    # An RSA key published with alg ES256 is not a usable key at all.
    provider.extra_jwks = [SigningKey.generate("RS256", kid="liar").public_jwk(alg="ES256")]
    liar = SigningKey.generate("RS256", kid="liar")
    await _invalid(_verifier(fetcher), provider.token(liar), _config(provider))


async def test_a_tampered_or_foreign_signature_is_refused(
    provider: OidcProvider, fetcher: GuardedFetcher
) -> None:
    key = provider.add_key("ES256")
    verifier = _verifier(fetcher)
    token = provider.token(key)
    header, _, signature = token.split(".")
    await _invalid(
        verifier,
        f"{header}.{_b64(orjson.dumps(provider.claims(sub='admin')))}.{signature}",
        _config(provider),
    )
    forger = SigningKey.generate("ES256", kid=key.kid)
    await _invalid(verifier, provider.token(forger), _config(provider))


async def test_a_weak_rsa_key_is_refused(provider: OidcProvider, fetcher: GuardedFetcher) -> None:
    weak = provider.add_key("RS256", rsa_bits=1024)
    with pytest.warns(jwt.warnings.InsecureKeyLengthWarning):
        token = provider.token(weak)
    await _invalid(_verifier(fetcher), token, _config(provider))


@pytest.mark.parametrize("token", ["", "orc_abc", "a.b", "a.b.c", "x" * 20000 + ".a.b"])
async def test_malformed_tokens_are_refused(
    provider: OidcProvider, fetcher: GuardedFetcher, token: str
) -> None:
    await _invalid(_verifier(fetcher), token, _config(provider))
    assert provider.jwks_fetches == 0


async def test_a_token_without_kid_is_refused(
    provider: OidcProvider, fetcher: GuardedFetcher
) -> None:
    key = provider.add_key()
    token = jwt.encode(provider.claims(), key.private_key, algorithm="RS256")
    await _invalid(_verifier(fetcher), token, _config(provider))


# --- key rotation and fetch limits ------------------------------------------------------------


async def test_key_rotation_refetches_once_then_accepts(
    provider: OidcProvider, fetcher: GuardedFetcher, clock: FakeClock
) -> None:
    old = provider.add_key()
    verifier = _verifier(fetcher, clock)
    assert (await verifier.verify(provider.token(old), _config(provider), now=_now())).user
    assert provider.jwks_fetches == 1
    clock.advance(61)
    new = provider.rotate("ES256")
    assert (await verifier.verify(provider.token(new), _config(provider), now=_now())).user
    assert provider.jwks_fetches == 2
    for _ in range(5):
        assert (await verifier.verify(provider.token(new), _config(provider), now=_now())).user
    assert provider.jwks_fetches == 2
    # The old key was withdrawn: the refreshed set no longer holds it.
    await _invalid(verifier, provider.token(old), _config(provider))


async def test_a_new_kid_within_the_minute_waits_for_the_next_fetch(
    provider: OidcProvider, fetcher: GuardedFetcher, clock: FakeClock
) -> None:
    old = provider.add_key()
    verifier = _verifier(fetcher, clock)
    await verifier.verify(provider.token(old), _config(provider), now=_now())
    new = provider.add_key()
    clock.advance(30)
    await _invalid(verifier, provider.token(new), _config(provider))
    assert provider.jwks_fetches == 1
    clock.advance(31)
    assert (await verifier.verify(provider.token(new), _config(provider), now=_now())).user
    assert provider.jwks_fetches == 2


async def test_an_unknown_kid_storm_makes_at_most_one_fetch_a_minute(
    provider: OidcProvider, fetcher: GuardedFetcher, clock: FakeClock
) -> None:
    known = provider.add_key()
    verifier = _verifier(fetcher, clock)
    # Cold start: 30 valid tokens at once make one fetch between them (single-flight).
    results = await asyncio.gather(
        *(verifier.verify(provider.token(known), _config(provider), now=_now()) for _ in range(30))
    )
    assert {identity.user for identity in results} == {"user-1"}
    assert provider.jwks_fetches == 1
    clock.advance(61)
    strangers = [SigningKey.generate("ES256") for _ in range(50)]
    outcomes = await asyncio.gather(
        *(verifier.verify(provider.token(s), _config(provider), now=_now()) for s in strangers),
        return_exceptions=True,
    )
    assert all(type(outcome) is Unauthenticated for outcome in outcomes)
    assert provider.jwks_fetches == 2
    for stranger in strangers[:10]:
        clock.advance(5)
        await _invalid(verifier, provider.token(stranger), _config(provider))
    assert provider.jwks_fetches == 2
    clock.advance(11)  # 61 s after the storm's fetch
    await _invalid(verifier, provider.token(strangers[0]), _config(provider))
    assert provider.jwks_fetches == 3
    # The known key kept working throughout.
    assert (await verifier.verify(provider.token(known), _config(provider), now=_now())).user


async def test_a_cancelled_fetch_lets_the_next_waiter_fetch(
    provider: OidcProvider, fetcher: GuardedFetcher
) -> None:
    # The request that started the fetch goes away (its client disconnected): the tokens
    # waiting for the same keys must not be refused because of it.
    key = provider.add_key()
    provider.jwks_gate = threading.Event()
    verifier = _verifier(fetcher)
    first = asyncio.ensure_future(
        verifier.verify(provider.token(key), _config(provider), now=_now())
    )
    for _ in range(500):  # until the provider holds the first fetch (at most 5 s)
        if provider.jwks_fetches:
            break
        await asyncio.sleep(0.01)
    second = asyncio.ensure_future(
        verifier.verify(provider.token(key), _config(provider), now=_now())
    )
    await asyncio.sleep(0.05)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    provider.jwks_gate.set()
    assert (await second).user == "user-1"
    assert provider.jwks_fetches == 2


async def test_a_stale_key_set_is_refreshed_and_a_withdrawn_key_stops(
    provider: OidcProvider, fetcher: GuardedFetcher, clock: FakeClock
) -> None:
    old = provider.add_key()
    verifier = _verifier(fetcher, clock)
    await verifier.verify(provider.token(old), _config(provider), now=_now())
    provider.rotate()
    clock.advance(3601)
    await _invalid(verifier, provider.token(old), _config(provider))
    assert provider.jwks_fetches == 2


# --- the provider going away ------------------------------------------------------------------


class CountingFetcher:
    """The real fetcher, counting the GETs it was asked for (a stopped provider counts none)."""

    def __init__(self, inner: GuardedFetcher) -> None:
        self.inner = inner
        self.urls: list[str] = []

    async def get(self, url: str, *, limit: int, timeout: float) -> bytes:
        self.urls.append(url)
        return await self.inner.get(url, limit=limit, timeout=timeout)


async def test_known_keys_keep_verifying_when_the_provider_is_down(
    provider: OidcProvider, fetcher: GuardedFetcher, clock: FakeClock
) -> None:
    key = provider.add_key("EdDSA")
    counting = CountingFetcher(fetcher)
    verifier = OidcVerifier(counting, clock=clock)
    await verifier.verify(provider.token(key), _config(provider), now=_now())
    token = provider.token(key, sub="bob")
    provider.stop()
    assert (await verifier.verify(token, _config(provider), now=_now())).user == "bob"
    assert len(counting.urls) == 2  # discovery and keys, once
    clock.advance(3601)  # stale: a refresh is tried, fails, and the cached key still serves
    assert (await verifier.verify(token, _config(provider), now=_now())).user == "bob"
    assert len(counting.urls) == 3  # the discovery document could not be fetched
    for _ in range(5):  # and it is not tried again on every token
        clock.advance(10)
        assert (await verifier.verify(token, _config(provider), now=_now())).user == "bob"
    assert len(counting.urls) == 3
    # A kid it never saw cannot be checked while the provider is down: 503, not 401.
    stranger = SigningKey.generate("EdDSA")
    clock.advance(61)
    await _unavailable(verifier, provider.token(stranger), _config(provider))


async def test_the_provider_down_with_nothing_cached_is_unavailable(
    provider: OidcProvider, fetcher: GuardedFetcher, clock: FakeClock
) -> None:
    key = provider.add_key()
    token = provider.token(key)
    provider.stop()
    counting = CountingFetcher(fetcher)
    verifier = OidcVerifier(counting, clock=clock)
    error = await _unavailable(verifier, token, _config(provider))
    assert "cannot be used" in error.message
    assert error.retryable
    assert len(counting.urls) == 1
    # Tried again after the retry interval (5 s), not on every token before it.
    clock.advance(2)
    error = await _unavailable(verifier, token, _config(provider))
    assert error.retry_after == pytest.approx(3.0)
    assert len(counting.urls) == 1
    clock.advance(4)
    await _unavailable(verifier, token, _config(provider))
    assert len(counting.urls) == 2


async def test_the_provider_coming_back_is_used_again(
    fetcher: GuardedFetcher, clock: FakeClock
) -> None:
    with OidcProvider.running() as provider:
        key = provider.add_key()
        token, issuer = provider.token(key), provider.issuer
    verifier = _verifier(fetcher, clock)
    await _unavailable(verifier, token, OidcConfig(issuer=issuer, audience=AUDIENCE))
    with OidcProvider.running() as again:
        again.add_key()
        key = again.add_key()
        clock.advance(6)
        assert (await verifier.verify(again.token(key), _config(again), now=_now())).user
        assert again.jwks_fetches == 1


# --- what the provider serves -----------------------------------------------------------------


async def test_a_discovery_document_naming_another_issuer_is_refused(
    provider: OidcProvider, fetcher: GuardedFetcher
) -> None:
    key = provider.add_key()
    provider.discovery_issuer = "https://login.evil.example"
    error = await _unavailable(_verifier(fetcher), provider.token(key), _config(provider))
    assert "issuer" in error.message
    assert provider.jwks_fetches == 0


async def test_a_missing_discovery_document_is_unavailable(
    provider: OidcProvider, fetcher: GuardedFetcher
) -> None:
    key = provider.add_key()
    config = _config(provider, issuer=provider.issuer + "/realms/missing")
    token = provider.token(key, iss=config.issuer)
    error = await _unavailable(_verifier(fetcher), token, config)
    assert "404" in error.message


@pytest.mark.parametrize("send_length", [True, False], ids=["content-length", "close-delimited"])
async def test_an_oversized_key_set_is_refused(
    provider: OidcProvider, fetcher: GuardedFetcher, send_length: bool
) -> None:
    key = provider.add_key()
    provider.jwks_padding = 2 * 1024 * 1024
    provider.send_length = send_length
    error = await _unavailable(_verifier(fetcher), provider.token(key), _config(provider))
    assert "more than 1048576 bytes" in error.message


async def test_a_key_set_that_is_not_one_is_refused(
    provider: OidcProvider, fetcher: GuardedFetcher
) -> None:
    key = provider.add_key()
    provider.extra_jwks = [{"kty": "oct", "kid": f"k{i}", "k": "c2VjcmV0"} for i in range(70)]
    error = await _unavailable(_verifier(fetcher), provider.token(key), _config(provider))
    assert "more than 64 keys" in error.message


@pytest.mark.parametrize(
    "jwks_uri",
    [
        "https://169.254.169.254/latest/meta-data/jwks",  # cloud metadata
        "http://10.1.2.3/jwks",  # private, and plain http
        "https://192.168.0.10/jwks",
        "file:///etc/passwd",
        "http://user:pass@127.0.0.1:1/jwks",
    ],
)
async def test_a_jwks_uri_the_ssrf_rules_refuse_is_never_fetched(
    provider: OidcProvider, fetcher: GuardedFetcher, jwks_uri: str
) -> None:
    key = provider.add_key()
    provider.jwks_uri = jwks_uri
    error = await _unavailable(_verifier(fetcher), provider.token(key), _config(provider))
    assert "Refused to fetch" in error.message
    assert "user:pass" not in error.message


async def test_a_jwks_host_resolving_to_a_private_address_is_refused_at_connect(
    provider: OidcProvider, fetcher: GuardedFetcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    # DNS rebinding: a public-looking name that resolves to an internal address.
    asked: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        return ["10.0.0.7"] if host == "keys.idp.example" else [host]

    monkeypatch.setattr(egress, "resolve", resolve)
    key = provider.add_key()
    provider.jwks_uri = "https://keys.idp.example/jwks"
    error = await _unavailable(_verifier(fetcher), provider.token(key), _config(provider))
    assert "private or link-local" in error.message
    assert asked == ["127.0.0.1", "keys.idp.example"]


async def test_an_allow_listed_host_may_be_plain_http(provider: OidcProvider) -> None:
    # 127.0.0.1 is loopback anyway; "localhost" goes through the allow-list path by name.
    key = provider.add_key()
    fetcher = GuardedFetcher(allowed_hosts=("LOCALHOST",))
    try:
        issuer = provider.issuer.replace("127.0.0.1", "localhost")
        provider.discovery_issuer = issuer
        provider.jwks_uri = f"{issuer}/jwks"
        verifier = _verifier(fetcher)
        identity = await verifier.verify(
            provider.token(key, iss=issuer),
            OidcConfig(issuer=issuer, audience=AUDIENCE),
            now=_now(),
        )
        assert identity.issuer == issuer
    finally:
        await fetcher.aclose()
