"""Client tokens: ``orc_`` + 256 random bits, URL-safe. Only their SHA-256 digest is stored.

A token carries 256 bits of entropy, so a plain SHA-256 digest is enough (no pepper needed:
nothing can be guessed offline), and the lookup is by digest, which reveals nothing about
the secret through timing. The final comparison is constant-time anyway.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

TOKEN_PREFIX = "orc_"  # noqa: S105 (a prefix, not a secret)
_SECRET_BYTES = 32
# Length of the visible hint kept for listings ("orc_AbCd…"): 24 bits, useless to an attacker.
_HINT_CHARS = 4


@dataclass(frozen=True, slots=True)
class NewToken:
    secret: str  # shown once, never stored
    digest: str
    hint: str


def generate() -> NewToken:
    secret = TOKEN_PREFIX + secrets.token_urlsafe(_SECRET_BYTES)
    return NewToken(secret=secret, digest=digest(secret), hint=hint(secret))


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def hint(secret: str) -> str:
    return secret[: len(TOKEN_PREFIX) + _HINT_CHARS] + "…"


def looks_like_token(value: str) -> bool:
    """Cheap shape check before any database work (length of orc_ + 43 base64url chars)."""
    return value.startswith(TOKEN_PREFIX) and 40 <= len(value) <= 100


def matches(presented: str, stored_digest: str) -> bool:
    return hmac.compare_digest(digest(presented), stored_digest)
