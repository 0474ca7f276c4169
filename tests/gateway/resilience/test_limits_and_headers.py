"""Input limits (413/422 with clear codes) and the security headers on every kind of response.

The resilience gateway's limits (conftest.SETTINGS): 16 KiB bodies, 2000 prompt characters,
8 messages, 256 bytes of metadata.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.gateway.http.conftest import ADMIN_TOKEN, AppHandle
from tests.gateway.resilience.conftest import (
    MAX_BODY_BYTES,
    MAX_MESSAGES,
    MAX_METADATA_BYTES,
    MAX_PROMPT_CHARS,
    SECURITY_HEADERS,
    Tenants,
    assert_security_headers,
    call,
    record_of,
)

pytestmark = pytest.mark.anyio

CSP = "default-src 'none'; frame-ancestors 'none'"
ORIGIN = "http://app-a.example.test"
UNKNOWN_ORIGIN = "http://evil.example.test"


def messages(count: int) -> list[dict[str, str]]:
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": "hi"} for i in range(count)]


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], **fields}


def metadata_of_size(size: int) -> dict[str, str]:
    """A metadata object whose JSON (as the gateway measures it) is exactly ``size`` bytes."""
    overhead = len(json.dumps({"k": ""}))
    value = {"k": "x" * (size - overhead)}
    assert len(json.dumps(value)) == size
    return value


def assert_our_error(response: httpx.Response, status: int, code: str, *words: str) -> None:
    assert response.status_code == status, (response.status_code, response.text)
    error = response.json()["error"]
    assert error["code"] == code, error
    for word in words:
        assert word in error["message"], error
    assert error["request_id"] == response.headers["x-request-id"]
    assert_security_headers(response)


@pytest.fixture
async def app(tenants: Tenants) -> AppHandle:
    return await tenants.add(origins=(ORIGIN,))


# --- limits ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"prompt": "x" * (MAX_PROMPT_CHARS + 1)}, ("prompt", str(MAX_PROMPT_CHARS))),
        ({"messages": messages(MAX_MESSAGES + 1)}, ("messages", str(MAX_MESSAGES))),
        (
            {"prompt": "hi", "metadata": metadata_of_size(MAX_METADATA_BYTES + 1)},
            ("metadata", str(MAX_METADATA_BYTES)),
        ),
        ({"prompt": "x" * (MAX_BODY_BYTES + 10)}, ("body", str(MAX_BODY_BYTES))),
    ],
    ids=["prompt-chars", "messages", "metadata", "body"],
)
async def test_limits_on_ask_are_413_request_too_large(
    client: httpx.AsyncClient, app: AppHandle, body: dict[str, Any], words: tuple[str, ...]
) -> None:
    response = await client.post("/ask", json=body, headers=app.auth)
    assert_our_error(response, 413, "request_too_large", *words)
    record = await record_of(client, app, response.headers["x-request-id"])
    assert (record["outcome"], record["error_code"], record["http_status"]) == (
        "rejected",
        "request_too_large",
        413,
    )


async def test_a_streamed_body_without_content_length_is_cut_at_the_limit(
    client: httpx.AsyncClient, app: AppHandle
) -> None:
    sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b'{"prompt": "'
        for _ in range(64):
            sent += 1024
            yield b"x" * 1024
        yield b'"}'

    response = await client.post(
        "/ask", content=body(), headers={**app.auth, "Content-Type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert_our_error(response, 413, "request_too_large", str(MAX_BODY_BYTES))


@pytest.mark.parametrize(
    "body",
    [
        {"prompt": "x" * MAX_PROMPT_CHARS},
        {"messages": messages(MAX_MESSAGES)},
        {"prompt": "hi", "metadata": metadata_of_size(MAX_METADATA_BYTES)},
    ],
    ids=["prompt-chars", "messages", "metadata"],
)
async def test_exactly_at_each_limit_is_accepted(
    client: httpx.AsyncClient, app: AppHandle, body: dict[str, Any]
) -> None:
    ended = await call(client, app, body)
    assert ended.assert_typed_end() == "done", (ended.status, ended.body)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (chat(messages=messages(MAX_MESSAGES + 1)), ("messages",)),
        (
            chat(messages=[{"role": "user", "content": [{"type": "text", "text": "x" * 2100}]}]),
            ("prompt",),
        ),
        (chat(user="x" * (MAX_BODY_BYTES + 1)), ("body",)),
    ],
    ids=["messages", "prompt-in-content-parts", "body"],
)
async def test_limits_on_v1_are_413_in_openai_shape(
    client: httpx.AsyncClient, app: AppHandle, body: dict[str, Any], words: tuple[str, ...]
) -> None:
    response = await client.post("/v1/chat/completions", json=body, headers=app.auth)
    assert response.status_code == 413, response.text
    error = response.json()["error"]
    assert (error["code"], error["type"]) == ("request_too_large", "invalid_request_error")
    for word in words:
        assert word in error["message"], error
    assert_security_headers(response)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/ask", {"prompt": "hi", "max_tokens": 0}),
        ("/ask", {"prompt": "hi", "metadata": ["not", "an", "object"]}),
        ("/ask", {"messages": [{"role": "user", "content": "hi", "name": "extra"}]}),
        ("/v1/chat/completions", chat(max_tokens=-1)),
        ("/v1/chat/completions", chat(messages=[])),
    ],
    ids=["ask-max-tokens", "ask-metadata", "ask-extra-field", "v1-max-tokens", "v1-no-messages"],
)
async def test_schema_violations_are_422_invalid_request(
    client: httpx.AsyncClient, app: AppHandle, path: str, body: dict[str, Any]
) -> None:
    response = await client.post(path, json=body, headers=app.auth)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_request"
    assert "Traceback" not in response.text
    assert_security_headers(response)


# --- security headers -----------------------------------------------------------------------


def _assert_api_headers(response: httpx.Response | Any) -> None:
    assert_security_headers(response)
    assert response.headers.get("content-security-policy") == CSP, dict(response.headers)


async def test_security_headers_on_json_sse_and_error_responses(
    client: httpx.AsyncClient, app: AppHandle
) -> None:
    auth = app.auth
    checks: list[tuple[str, httpx.Response | Any]] = [
        ("status", await client.get("/status")),
        ("status-app", await client.get("/status", headers=auth)),
        ("models", await client.get("/v1/models", headers=auth)),
        ("logs", await client.get("/logs", headers=auth)),
        ("metrics", await client.get("/metrics")),
        (
            "json-answer",
            await client.post("/ask", json={"prompt": "hi", "stream": False}, headers=auth),
        ),
        ("v1-answer", await client.post("/v1/chat/completions", json=chat(), headers=auth)),
        ("401", await client.post("/ask", json={"prompt": "hi"})),
        (
            "401-admin-on-ask",
            await client.post(
                "/ask", json={"prompt": "hi"}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
            ),
        ),
        ("400", await client.post("/ask", content=b"{nope", headers=auth)),
        ("404", await client.get("/no/such/route")),
        ("405", await client.put("/ask", json={}, headers=auth)),
        (
            "403-origin",
            await client.post(
                "/ask", json={"prompt": "hi"}, headers={**auth, "Origin": UNKNOWN_ORIGIN}
            ),
        ),
        ("options-without-origin", await client.options("/ask")),
    ]
    for name, response in checks:
        try:
            _assert_api_headers(response)
        except AssertionError as exc:
            raise AssertionError(f"{name} ({response.status_code}): {exc}") from None
    sse = await call(client, app, {"prompt": "hi"})
    assert sse.assert_typed_end() == "done"
    _assert_api_headers(sse)
    failed_sse = await call(client, app, {"prompt": "[die-after:1]"})
    assert failed_sse.assert_typed_end() == "error:upstream_error"
    _assert_api_headers(failed_sse)
    async with client.stream("GET", "/logs", params={"follow": "true"}, headers=auth) as follow:
        _assert_api_headers(follow)


@pytest.mark.parametrize(
    ("origin", "status"),
    [(ORIGIN, 204), (UNKNOWN_ORIGIN, 403)],
    ids=["allowed", "refused"],
)
async def test_security_headers_on_preflight_responses(
    client: httpx.AsyncClient, app: AppHandle, origin: str, status: int
) -> None:
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    response = await client.options("/ask", headers=headers)
    assert response.status_code == status, response.text
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, (name, dict(response.headers))
    assert response.headers.get("x-request-id")


async def test_cors_echoes_only_an_allowed_origin_never_a_wildcard(
    client: httpx.AsyncClient, app: AppHandle
) -> None:
    preflight = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
    allowed = await client.options("/ask", headers=preflight)
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    refused = await client.options("/ask", headers={**preflight, "Origin": UNKNOWN_ORIGIN})
    assert "access-control-allow-origin" not in refused.headers
    answered = await client.post(
        "/ask", json={"prompt": "hi", "stream": False}, headers={**app.auth, "Origin": ORIGIN}
    )
    assert answered.status_code == 200
    assert answered.headers["access-control-allow-origin"] == ORIGIN
    plain = await client.get("/status")
    assert "access-control-allow-origin" not in plain.headers
    for response in (allowed, refused, answered, plain):
        assert response.headers.get("access-control-allow-origin") != "*"
