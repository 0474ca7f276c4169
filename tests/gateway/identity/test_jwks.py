"""Parsing a provider's key set: only signature keys of the three algorithms, bound to them."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.identity.jwks import MAX_KEYS, JwksError, algorithm_of, parse_jwks
from tests.support.oidc_provider import SigningKey

RSA = SigningKey.generate("RS256", kid="rsa")
EC = SigningKey.generate("ES256", kid="ec")
ED = SigningKey.generate("EdDSA", kid="ed")


def _parse(*entries: Any) -> dict[str, Any]:
    return parse_jwks(orjson.dumps({"keys": list(entries)}))


def test_the_three_algorithms_load_bound_to_their_algorithm() -> None:
    keys = _parse(RSA.public_jwk(), EC.public_jwk(), ED.public_jwk())
    assert {kid: key.algorithm_name for kid, key in keys.items()} == {
        "rsa": "RS256",
        "ec": "ES256",
        "ed": "EdDSA",
    }


def test_the_algorithm_follows_from_the_type_when_alg_is_absent() -> None:
    entries = [key.public_jwk() for key in (RSA, EC, ED)]
    for entry in entries:
        del entry["alg"]
        del entry["use"]
    assert [algorithm_of(entry) for entry in entries] == ["RS256", "ES256", "EdDSA"]
    assert set(_parse(*entries)) == {"rsa", "ec", "ed"}


@pytest.mark.parametrize(
    "entry",
    [
        {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"},
        RSA.public_jwk(kid="hs", alg="HS256"),  # an RSA key offered for HMAC
        RSA.public_jwk(kid="rs512", alg="RS512"),
        RSA.public_jwk(kid="mismatch", alg="ES256"),  # the type does not fit the alg
        EC.public_jwk(kid="p384", crv="P-384"),
        RSA.public_jwk(kid="enc", use="enc"),
        RSA.public_jwk(kid="private", d="AQAB"),
        RSA.public_jwk(kid=None),
        RSA.public_jwk(kid=""),
        RSA.public_jwk(kid=7),
        RSA.public_jwk(kid="broken", n="!!"),
        "not a key",
    ],
    ids=lambda entry: str(entry.get("kid")) if isinstance(entry, dict) else "str",
)
def test_unusable_keys_are_skipped_not_fatal(entry: Any) -> None:
    assert set(_parse(entry, EC.public_jwk())) == {"ec"}


def test_the_first_of_a_repeated_kid_wins() -> None:
    other = SigningKey.generate("ES256", kid="ec")
    keys = _parse(EC.public_jwk(), other.public_jwk())
    assert keys["ec"].key == EC.private_key.public_key()


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b'{"keys": {}}', b"{}", b'{"keys": "x"}'],
)
def test_a_document_that_is_not_a_key_set_is_refused(body: bytes) -> None:
    with pytest.raises(JwksError):
        parse_jwks(body)


def test_too_many_keys_are_refused() -> None:
    with pytest.raises(JwksError, match="more than"):
        _parse(*[EC.public_jwk(kid=f"k{i}") for i in range(MAX_KEYS + 1)])
    assert len(_parse(*[EC.public_jwk(kid=f"k{i}") for i in range(MAX_KEYS)])) == MAX_KEYS
