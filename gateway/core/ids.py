"""Identifiers: short, URL-safe, time-ordered, with a prefix that says what they name."""

from __future__ import annotations

import secrets
import time
from typing import NewType

AppId = NewType("AppId", str)
TokenId = NewType("TokenId", str)
RequestId = NewType("RequestId", str)

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lowercase


def _base32(value: int, width: int) -> str:
    chars = []
    for _ in range(width):
        value, rem = divmod(value, 32)
        chars.append(_ALPHABET[rem])
    return "".join(reversed(chars))


def time_ordered(prefix: str) -> str:
    """``prefix_`` + 10 chars of milliseconds + 16 random chars (80 bits), sortable by creation."""
    millis = time.time_ns() // 1_000_000
    return f"{prefix}_{_base32(millis, 10)}{_base32(secrets.randbits(80), 16)}"


def new_app_id() -> AppId:
    return AppId(time_ordered("app"))


def new_token_id() -> TokenId:
    return TokenId(time_ordered("tok"))


def new_request_id() -> RequestId:
    return RequestId(time_ordered("req"))
