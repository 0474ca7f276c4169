"""Session tokens: minted for one user of one app, verified with the app's secrets only.

Each refusal test changes exactly one thing of an otherwise valid session (re-signed with the
right secret where the point is a claim, not the signature), so it proves that one check.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.core.errors import TokenExpired, Unauthenticated, UnprocessableRequest
from gateway.core.users import MAX_USER_CHARS, is_valid_user
from gateway.security import sessions
from gateway.security.sessions import (
    MintedSession,
    SessionClaims,
    looks_like_jwt,
    mint_session,
    new_session_secret,
    peek_session,
    verify_session,
)

NOW = datetime(2026, 12, 7, 12, 0, 0, tzinfo=UTC)
APP = "app_01jexample0000000000000000"
SECRET = new_session_secret()
SECRETS = {SECRET.kid: SECRET.secret}


def _mint(**overrides: Any) -> MintedSession:
    arguments: dict[str, Any] = {
        "app_id": APP,
        "user": "u-123",
        "secret": SECRET.secret,
        "kid": SECRET.kid,
        "ttl_s": 900,
        "now": NOW,
    }
    arguments.update(overrides)
    return mint_session(**arguments)


def _verify(token: str, **overrides: Any) -> SessionClaims:
    arguments: dict[str, Any] = {"secrets": SECRETS, "app_id": APP, "now": NOW}
    arguments.update(overrides)
    return verify_session(token, **arguments)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _decode(part: str) -> dict[str, Any]:
    value: dict[str, Any] = orjson.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return value


def _parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    header, payload, _ = token.split(".")
    return _decode(header), _decode(payload)


def _resign(
    token: str, claims: Mapping[str, object] = {}, *, header: dict[str, Any] | None = None
) -> str:
    """The same session with some claims changed (``None`` drops one), signed correctly."""
    old_header, payload = _parts(token)
    payload.update(claims)
    payload = {name: value for name, value in payload.items() if value is not None}
    new_header = header if header is not None else {"kid": old_header["kid"], "typ": "JWT"}
    return jwt.encode(payload, SECRET.secret, algorithm="HS256", headers=new_header)


# --- the round trip ---------------------------------------------------------------------------


def test_a_minted_session_verifies_with_its_claims() -> None:
    minted = _mint()
    claims = _verify(minted.token)
    assert claims.app_id == APP
    assert claims.user == "u-123"
    assert claims.issued_at == NOW
    assert claims.expires_at == minted.expires_at == NOW + timedelta(seconds=900)
    assert claims.origin is None
    assert len(claims.jti) >= 16


def test_the_token_is_a_standard_hs256_jwt() -> None:
    minted = _mint()
    header, payload = _parts(minted.token)
    assert header == {"alg": "HS256", "typ": "JWT", "kid": SECRET.kid}
    assert set(payload) == {"iss", "aud", "sub", "iat", "exp", "jti"}
    assert payload["iss"] == "orchestra"
    assert payload["aud"] == APP
    # Any JWT library checks it with the secret: nothing here is home-made.
    decoded = jwt.decode(
        minted.token,
        SECRET.secret,
        algorithms=["HS256"],
        audience=APP,
        options={"verify_exp": False, "verify_iat": False},
    )
    assert decoded["sub"] == "u-123"


def test_every_session_has_its_own_jti() -> None:
    assert _verify(_mint().token).jti != _verify(_mint().token).jti


def test_new_secrets_are_256_random_bits_with_a_public_id() -> None:
    first, second = new_session_secret(), new_session_secret()
    assert len(first.secret) == 32
    assert first.secret != second.secret
    assert first.kid != second.kid
    assert first.secret.hex() not in repr(first)


def test_peek_names_the_app_and_the_secret_without_verifying() -> None:
    assert peek_session(_mint().token) == (APP, SECRET.kid)


# --- expiry -----------------------------------------------------------------------------------


def test_an_expired_session_is_token_expired() -> None:
    token = _mint(ttl_s=60).token
    assert _verify(token, now=NOW + timedelta(seconds=59)).user == "u-123"
    with pytest.raises(TokenExpired) as caught:
        _verify(token, now=NOW + timedelta(seconds=60))
    assert caught.value.code == "token_expired"
    assert caught.value.http_status == 401


def test_leeway_tolerates_clock_skew_both_ways() -> None:
    token = _mint(ttl_s=60).token
    assert _verify(token, now=NOW + timedelta(seconds=65), leeway_s=10).user == "u-123"
    assert _verify(token, now=NOW - timedelta(seconds=5), leeway_s=10).user == "u-123"
    with pytest.raises(TokenExpired):
        _verify(token, now=NOW + timedelta(seconds=70), leeway_s=10)


def test_a_session_issued_in_the_future_is_invalid_not_expired() -> None:
    token = _mint().token
    with pytest.raises(Unauthenticated) as caught:
        _verify(token, now=NOW - timedelta(seconds=30))
    assert type(caught.value) is Unauthenticated
    assert caught.value.code == "invalid_token"


def test_a_session_with_nbf_in_the_future_is_invalid() -> None:
    token = _resign(_mint().token, {"nbf": int(NOW.timestamp()) + 60})
    with pytest.raises(Unauthenticated):
        _verify(token)
    assert _verify(token, now=NOW + timedelta(seconds=60)).user == "u-123"


def test_an_expired_forgery_is_invalid_not_expired() -> None:
    # "Expired" is only ever said of a session whose signature verified.
    token = _mint(ttl_s=60, secret=b"x" * 32).token
    with pytest.raises(Unauthenticated) as caught:
        _verify(token, now=NOW + timedelta(hours=1))
    assert type(caught.value) is Unauthenticated


# --- forgeries and misuse ---------------------------------------------------------------------


def _invalid(token: str, **overrides: Any) -> None:
    with pytest.raises(Unauthenticated) as caught:
        _verify(token, **overrides)
    assert type(caught.value) is Unauthenticated
    assert caught.value.code == "invalid_token"
    assert caught.value.message == "The session token is invalid."


def test_a_tampered_payload_is_refused() -> None:
    header, _, signature = _mint().token.split(".")
    claims = _parts(_mint().token)[1] | {"sub": "admin"}
    _invalid(f"{header}.{_b64(orjson.dumps(claims))}.{signature}")


def test_a_tampered_signature_is_refused() -> None:
    token = _mint().token
    flipped = "A" if token[-2] != "A" else "B"
    _invalid(token[:-2] + flipped + token[-1])
    _invalid(token.rsplit(".", 1)[0] + "." + _b64(b"\0" * 32))


def test_another_secret_is_refused() -> None:
    _invalid(_mint(secret=new_session_secret().secret).token)


def test_a_session_of_another_app_is_refused() -> None:
    token = _mint(app_id="app_other").token  # signed with the same secret, even
    _invalid(token)
    assert _verify(token, app_id="app_other").app_id == "app_other"


def test_an_audience_list_holding_the_app_is_refused() -> None:
    _invalid(_resign(_mint().token, {"aud": [APP, "app_other"]}))


def test_an_unknown_kid_is_refused() -> None:
    _invalid(_mint().token, secrets={"another-kid": SECRET.secret})


def test_rotation_keeps_both_secrets_valid_by_kid() -> None:
    new = new_session_secret()
    both = {SECRET.kid: SECRET.secret, new.kid: new.secret}
    old_token = _mint().token
    new_token = _mint(secret=new.secret, kid=new.kid).token
    assert _verify(old_token, secrets=both).user == "u-123"
    assert _verify(new_token, secrets=both).user == "u-123"
    # Once the old secret is dropped (its sessions expired, or --revoke), its tokens stop.
    _invalid(old_token, secrets={new.kid: new.secret})
    # A token naming one kid but signed with the other is refused.
    crossed = _mint(secret=SECRET.secret, kid=new.kid).token
    _invalid(crossed, secrets=both)


def test_alg_none_is_refused() -> None:
    _, payload = _parts(_mint().token)
    header = {"alg": "none", "typ": "JWT", "kid": SECRET.kid}
    unsigned = f"{_b64(orjson.dumps(header))}.{_b64(orjson.dumps(payload))}."
    _invalid(unsigned)
    _invalid(unsigned + "x")
    with pytest.raises(Unauthenticated):
        peek_session(unsigned + "x")


@pytest.mark.parametrize("alg", ["RS256", "HS384", "HS512", "ES256", "hs256", ""])
def test_any_other_alg_in_the_header_is_refused(alg: str) -> None:
    _, payload, signature = _mint().token.split(".")
    new_header = {"alg": alg, "typ": "JWT", "kid": SECRET.kid}
    _invalid(f"{_b64(orjson.dumps(new_header))}.{payload}.{signature}")


def test_an_rs256_token_is_refused_even_if_correctly_signed() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _, payload = _parts(_mint().token)
    token = jwt.encode(payload, private, algorithm="RS256", headers={"kid": SECRET.kid})
    _invalid(token)


def test_hs256_signed_with_an_rsa_public_key_is_refused() -> None:
    # The algorithm confusion attack, aimed at sessions: the forger knows only a public key.
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _, payload = _parts(_mint().token)
    signing_input = (
        f"{_b64(orjson.dumps({'alg': 'HS256', 'typ': 'JWT', 'kid': SECRET.kid}))}."
        f"{_b64(orjson.dumps(payload))}"
    )
    signature = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    _invalid(f"{signing_input}.{_b64(signature)}")


def test_a_wrong_typ_is_refused() -> None:
    _invalid(_resign(_mint().token, header={"kid": SECRET.kid, "typ": "at+jwt"}))


@pytest.mark.parametrize("claim", ["iss", "aud", "sub", "iat", "exp", "jti"])
def test_a_missing_claim_is_refused(claim: str) -> None:
    _invalid(_resign(_mint().token, {claim: None}))


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        ("iss", "someone-else"),
        ("sub", ""),
        ("sub", "a\nb"),
        ("sub", 42),
        ("iat", "1765108800"),
        ("exp", 1.5e9),
        ("exp", True),
        ("exp", 10**20),
        ("jti", 7),
        ("jti", ""),
        ("origin", ["https://a.example"]),
    ],
)
def test_an_ill_typed_claim_is_refused(claim: str, value: object) -> None:
    _invalid(_resign(_mint().token, {claim: value}))


def test_an_exp_before_iat_is_refused() -> None:
    _invalid(_resign(_mint().token, {"exp": int(NOW.timestamp()) - 1}))


@pytest.mark.parametrize(
    "token",
    [
        "",
        "orc_abc.def.ghi",
        "a.b",
        "a.b.c.d",
        "..",
        "not base64!.eyJ9.x",
        f"{_b64(b'[1]')}.{_b64(b'{}')}.sig",
        f"{_b64(b'not json')}.{_b64(b'{}')}.sig",
        "a" * 5000 + ".b.c",
    ],
)
def test_malformed_tokens_are_refused_cheaply(token: str) -> None:
    with pytest.raises(Unauthenticated):
        peek_session(token)
    _invalid(token)


def test_peek_refuses_a_payload_without_an_app() -> None:
    header = _b64(orjson.dumps({"alg": "HS256", "typ": "JWT", "kid": SECRET.kid}))
    for payload in ({}, {"aud": ["a"]}, {"aud": ""}):
        with pytest.raises(Unauthenticated):
            peek_session(f"{header}.{_b64(orjson.dumps(payload))}.c2ln")


# --- the user and the origin ------------------------------------------------------------------


@pytest.mark.parametrize(
    "user",
    ["u", "u-123", "alice@example.com", "Jürgen Müller", "用户-42", "a b", "x" * MAX_USER_CHARS],
)
def test_printable_users_of_1_to_128_characters_are_accepted(user: str) -> None:
    assert is_valid_user(user)
    assert _verify(_mint(user=user).token).user == user


@pytest.mark.parametrize(
    "user",
    [
        "",
        "x" * (MAX_USER_CHARS + 1),
        "a\nb",  # Cc: line feed
        "a\tb",  # Cc: tab
        "a\x00b",  # Cc: NUL
        "a\x1bb",  # Cc: escape (terminal control sequences)
        "a\x7fb",  # Cc: DEL
        "a\u200bb",  # Cf: zero-width space
        "a\u202eb",  # Cf: right-to-left override
        "a\u00a0b",  # Zs: no-break space
        "a\u2028b",  # Zl: line separator
        "a\ue000b",  # Co: private use
        "a\ud800b",  # Cs: a lone surrogate
    ],
)
def test_other_users_are_refused_when_minting(user: str) -> None:
    assert not is_valid_user(user)
    with pytest.raises(UnprocessableRequest) as caught:
        _mint(user=user)
    assert caught.value.http_status == 422
    assert caught.value.code == "invalid_request"


def test_users_that_are_not_strings_are_not_users() -> None:
    for value in (None, 42, b"u", ["u"]):
        assert not is_valid_user(value)


def test_the_origin_claim_is_normalised_and_returned() -> None:
    claims = _verify(_mint(origin="HTTPS://App.Example:8443").token)
    assert claims.origin == "https://app.example:8443"
    assert _parts(_mint(origin="http://localhost:4200").token)[1]["origin"] == (
        "http://localhost:4200"
    )


def test_a_bad_origin_is_refused_when_minting() -> None:
    with pytest.raises(UnprocessableRequest):
        _mint(origin="javascript:alert(1)")


@pytest.mark.parametrize("ttl_s", [0, -1, True, 1.5])
def test_a_bad_ttl_is_refused_when_minting(ttl_s: object) -> None:
    with pytest.raises(UnprocessableRequest):
        _mint(ttl_s=ttl_s)


def test_programming_errors_are_not_client_errors() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        _mint(secret=b"short")
    with pytest.raises(ValueError, match="secret id"):
        _mint(kid="has space")
    with pytest.raises(ValueError, match="timezone-aware"):
        _mint(now=datetime(2026, 1, 1))


# --- telling a session from a client token ----------------------------------------------------


def test_looks_like_jwt_tells_sessions_from_client_tokens() -> None:
    assert looks_like_jwt(_mint().token)
    assert not looks_like_jwt("orc_" + "A" * 43)
    assert not looks_like_jwt("orc_a.b.c")
    assert not looks_like_jwt("a.b")
    assert not looks_like_jwt("")
    assert sessions.ALGORITHM == "HS256"
