"""JSON Web Key Sets (RFC 7517): a provider's published keys, as verification keys by ``kid``.

Only signature keys of the three accepted algorithms are kept, each bound to its one
algorithm so a token can never choose how a key is used:

    RS256  kty RSA                (PyJWT refuses RSA keys under 2048 bits when verifying)
    ES256  kty EC,  crv P-256
    EdDSA  kty OKP, crv Ed25519

A key is skipped, not fatal, when it is of another type or algorithm (``oct`` secrets, RS512,
P-384 ...), meant for encryption (``use`` other than ``sig``), holds private material, has no
``kid``, or does not load. A document that is not ``{"keys": [...]}`` or lists more than
``MAX_KEYS`` keys is refused whole (``JwksError``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:  # PyJWT (and the asymmetric crypto it loads) is imported on first use:
    import jwt  # the app-token path never pays its memory (~4 MB) or import time

#: The accepted algorithms, with the key type and curve each requires.
ALGORITHMS: dict[str, tuple[str, str | None]] = {
    "RS256": ("RSA", None),
    "ES256": ("EC", "P-256"),
    "EdDSA": ("OKP", "Ed25519"),
}
MAX_KEYS = 64
MAX_KID_CHARS = 256
#: JWK members that only a private key has (RFC 7518 6.2.2, 6.3.2; RFC 8037 2).
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


class JwksError(ValueError):
    """The document is not a JWK Set."""


def algorithm_of(entry: dict[str, Any]) -> str | None:
    """The accepted algorithm this JWK is for, or None (its ``alg``, else its type and curve)."""
    kty, crv, alg = entry.get("kty"), entry.get("crv"), entry.get("alg")
    if alg is None:
        alg = next((name for name, shape in ALGORITHMS.items() if shape == (kty, crv)), None)
    if alg not in ALGORITHMS:
        return None
    return alg if ALGORITHMS[alg] == (kty, crv) else None


def _key(entry: object) -> tuple[str, jwt.PyJWK] | None:
    import jwt  # on first use (see the module top)

    if not isinstance(entry, dict):
        return None
    kid = entry.get("kid")
    if not isinstance(kid, str) or not 1 <= len(kid) <= MAX_KID_CHARS:
        return None
    if entry.get("use", "sig") != "sig" or _PRIVATE_MEMBERS & entry.keys():
        return None
    alg = algorithm_of(entry)
    if alg is None:
        return None
    try:
        return kid, jwt.PyJWK(entry, algorithm=alg)
    except jwt.PyJWTError:  # InvalidKeyError, PyJWKError: a key that does not load
        return None


def parse_jwks(body: bytes) -> dict[str, jwt.PyJWK]:
    """The usable keys of a JWK Set document, by ``kid`` (the first of a repeated kid wins)."""
    try:
        document = orjson.loads(body)
    except ValueError:
        raise JwksError("the key set is not JSON") from None
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise JwksError('the key set is not {"keys": [...]}')
    if len(entries) > MAX_KEYS:
        raise JwksError(f"the key set lists more than {MAX_KEYS} keys")
    keys: dict[str, jwt.PyJWK] = {}
    for entry in entries:
        found = _key(entry)
        if found is not None:
            keys.setdefault(*found)
    return keys
