"""Upstream error bodies become errors without the key of the call, whatever its form."""

from __future__ import annotations

import json
import secrets

import pytest

from gateway.core.errors import UpstreamAuthFailed, UpstreamRateLimited, UpstreamRejected
from gateway.core.redact import REDACTED, Redactor
from gateway.upstream.errors import error_for_status
from gateway.upstream.types import ChatRequest

KEYS = [
    "sk-" + secrets.token_urlsafe(36),
    "sk-proj-" + secrets.token_urlsafe(120),
    secrets.token_hex(16),
    secrets.token_urlsafe(30),
]


def body(message: object) -> bytes:
    return json.dumps({"error": {"message": message, "type": "x", "code": None}}).encode()


def pieces(key: str) -> list[str]:
    return [key[i : i + 8] for i in range(len(key) - 7)]


@pytest.mark.parametrize("key", KEYS, ids=["sk", "sk-proj", "hex", "arbitrary"])
@pytest.mark.parametrize("status", [400, 401, 403, 404, 429, 500, 502, 503, 504])
def test_the_upstream_message_keeps_its_words_and_loses_the_key(key: str, status: int) -> None:
    message = f"Incorrect API key provided: {key}; yours starts {key[:10]}, ends {key[-9:]}"
    error = error_for_status(status, body(message), None, Redactor(key))
    assert not [p for p in pieces(key) if p in error.message], error.message
    if status in (401, 403):
        assert isinstance(error, UpstreamAuthFailed)
        return
    assert f"Incorrect API key provided: {REDACTED}" in error.message
    if status == 429:
        assert isinstance(error, UpstreamRateLimited)
    elif status < 500:
        assert isinstance(error, UpstreamRejected)


def test_a_key_past_the_kept_part_is_redacted_before_the_cut() -> None:
    key = secrets.token_hex(16)
    # The key straddles the 300th character: cut first, its first 20 characters would stay.
    message = "x" * 280 + " " + key
    error = error_for_status(400, body(message), None, Redactor(key))
    assert not [p for p in pieces(key) if p in error.message], error.message


def test_a_message_that_is_not_text_is_still_redacted() -> None:
    key = secrets.token_urlsafe(30)
    error = error_for_status(400, body({"detail": key}), None, Redactor(key))
    assert key not in error.message and REDACTED in error.message


def test_a_request_never_shows_its_key_in_a_repr() -> None:
    key = secrets.token_hex(16)
    request = ChatRequest(base_url="http://x.test/v1", api_key=key, model="m", messages=[])
    assert key not in repr(request) and key not in str(request)
