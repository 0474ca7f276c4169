"""Identifiers: short, URL-safe, time-ordered, with a prefix that says what they name."""

from __future__ import annotations

import base64
import re
import secrets
import time
from typing import NewType

AppId = NewType("AppId", str)
TokenId = NewType("TokenId", str)
RequestId = NewType("RequestId", str)

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lowercase
#: RFC 4648 base32 (what the C encoder writes) to the Crockford alphabet above.
_TO_CROCKFORD = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _ALPHABET.encode())


def time_ordered(prefix: str) -> str:
    """``prefix_`` + 10 chars of milliseconds + 16 random chars (80 bits), sortable by creation."""
    millis = time.time_ns() // 1_000_000
    # 130 bits (50 of time, 80 random) shifted into 17 bytes: the first 26 base32 characters
    # are those bits, most significant first. One id per request: the C encoder, not a loop.
    value = ((millis % (1 << 50)) << 80 | secrets.randbits(80)) << 6
    encoded = base64.b32encode(value.to_bytes(17, "big")).translate(_TO_CROCKFORD)
    return f"{prefix}_{encoded[:26].decode()}"


def new_app_id() -> AppId:
    return AppId(time_ordered("app"))


def new_token_id() -> TokenId:
    return TokenId(time_ordered("tok"))


def new_request_id() -> RequestId:
    return RequestId(time_ordered("req"))


_REQUEST_ID = re.compile(f"req_[{_ALPHABET}]{{26}}")


def parse_request_id(text: str) -> RequestId | None:
    """``text`` as a request id; None when no request of this gateway can have it."""
    return RequestId(text) if _REQUEST_ID.fullmatch(text) else None
