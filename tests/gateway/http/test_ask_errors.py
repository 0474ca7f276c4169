"""Every error of POST /ask, as the Angular client sees it: status, code, JSON or SSE event."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from tests.gateway.http.conftest import (
    FIRST_TOKEN_TIMEOUT_S,
    IDLE_TIMEOUT_S,
    MAX_BODY_BYTES,
    MAX_PROMPT_CHARS,
    MODEL,
    AppHandle,
    Apps,
    ask_stream,
    assert_error,
    free_port,
)

pytestmark = pytest.mark.anyio

JSON = {"Content-Type": "application/json"}


async def post_ask(
    client: httpx.AsyncClient, app: AppHandle | None, body: Any, **headers: str
) -> httpx.Response:
    auth = {} if app is None else app.auth
    return await client.post("/ask", json=body, headers={**auth, **headers})


# --- 400/422 invalid_request ----------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b"",
        b'{"prompt": "unterminated',
        b"\xff\xfe",
        b"[1, 2]",
        b'"a string"',
        # Python's json reads these, but they cannot be written back (records, /logs, upstream):
        b'{"prompt": "hi", "temperature": NaN}',
        b'{"prompt": "hi", "metadata": {"x": Infinity}}',
        b'{"prompt": "hi", "metadata": {"x": 1e400}}',
        b'{"prompt": "\\ud800"}',
        b'{"prompt": "\xed\xa0\x80"}',
    ],
    ids=[
        "syntax",
        "empty",
        "truncated",
        "not-utf8",
        "array",
        "string",
        "nan",
        "infinity",
        "overflowing-float",
        "lone-surrogate-escape",
        "encoded-surrogate",
    ],
)
async def test_a_body_that_is_not_a_json_object_is_400(
    client: httpx.AsyncClient, apps: Apps, raw: bytes
) -> None:
    app = await apps.add()
    response = await client.post("/ask", content=raw, headers={**app.auth, **JSON})
    assert_error(response, 400, "invalid_request")


@pytest.mark.parametrize(
    "body",
    [
        {"prompt": ""},
        {"prompt": "   \n"},
        {},
        {"model": "gpt-4o-mini"},
        {"prompt": "hi", "messages": [{"role": "user", "content": "hi"}]},
        {"messages": []},
        {"prompt": 42},
        {"prompt": ["a", "list"]},
        {"messages": "hi"},
        {"messages": [{"role": "wizard", "content": "hi"}]},
        {"messages": [{"role": "user"}]},
        {"messages": [{"role": "user", "content": {"nested": True}}]},
        {"prompt": "hi", "temperature": "hot"},
        {"prompt": "hi", "temperature": 3},
        {"prompt": "hi", "max_tokens": 0},
        {"prompt": "hi", "max_tokens": "many"},
        {"prompt": "hi", "metadata": "not an object"},
        {"prompt": "hi", "model": ""},
        {"prompt": "hi", "unknown_field": 1},
        {"prompt": "hi", "conversation_id": "a\x00b"},
    ],
    ids=[
        "empty-prompt",
        "blank-prompt",
        "neither",
        "neither-with-model",
        "both",
        "empty-messages",
        "prompt-int",
        "prompt-list",
        "messages-string",
        "bad-role",
        "missing-content",
        "content-object",
        "temperature-string",
        "temperature-range",
        "max-tokens-zero",
        "max-tokens-string",
        "metadata-string",
        "model-empty",
        "unknown-field",
        "conversation-id-control-char",
    ],
)
async def test_a_body_that_does_not_match_the_schema_is_422(
    client: httpx.AsyncClient, apps: Apps, body: dict[str, Any]
) -> None:
    app = await apps.add()
    error = assert_error(await post_ask(client, app, body), 422, "invalid_request")
    assert "Invalid request" in error["message"]


@pytest.mark.parametrize(
    ("body", "unknown"),
    [({}, None), ({"model": MODEL}, None), ({"text": "Hello!"}, "'text'")],
    ids=["empty", "only-model", "text-instead-of-prompt"],
)
async def test_a_body_without_prompt_or_messages_says_that_one_is_required(
    client: httpx.AsyncClient, apps: Apps, body: dict[str, Any], unknown: str | None
) -> None:
    app = await apps.add()
    error = assert_error(await post_ask(client, app, body), 422, "invalid_request")
    assert "'prompt' or 'messages'" in error["message"]
    if unknown is not None:  # the field that was not understood is named as well
        assert unknown in error["message"]


# --- 401 invalid_token ----------------------------------------------------------------------


async def test_every_bad_token_gets_the_same_401(client: httpx.AsyncClient, apps: Apps) -> None:
    app = await apps.add()
    revoked = await apps.issue_token(app)
    await apps.revoke(revoked)
    expired = await apps.issue_token(app, expires_in=timedelta(seconds=-1))
    unknown = "orc_" + "A" * 43
    cases = {
        "missing": {},
        "empty bearer": {"Authorization": "Bearer"},
        "other scheme": {"Authorization": f"Basic {app.token}"},
        "no scheme": {"Authorization": app.token},
        "malformed": {"Authorization": "Bearer not-a-token"},
        "truncated": {"Authorization": f"Bearer {app.token[:20]}"},
        "unknown": {"Authorization": f"Bearer {unknown}"},
        "revoked": revoked.auth,
        "expired": expired.auth,
    }
    bodies = {}
    for case, headers in cases.items():
        response = await client.post("/ask", json={"prompt": "hi"}, headers=headers)
        error = assert_error(response, 401, "invalid_token")
        bodies[case] = {k: v for k, v in error.items() if k != "request_id"}
    assert len({tuple(sorted(b.items())) for b in bodies.values()}) == 1, bodies
    assert app.token not in str(bodies)
    # The app's good token still works.
    assert (await post_ask(client, app, {"prompt": "hi", "stream": False})).status_code == 200


# --- 403 ------------------------------------------------------------------------------------


async def test_a_disabled_app_gets_403_app_disabled(client: httpx.AsyncClient, apps: Apps) -> None:
    app = await apps.add()
    await apps.set_disabled(app, disabled=True)
    assert_error(await post_ask(client, app, {"prompt": "hi"}), 403, "app_disabled")


async def test_an_origin_not_allowed_gets_403(client: httpx.AsyncClient, apps: Apps) -> None:
    app = await apps.add(origins=("http://allowed.test",))
    response = await post_ask(client, app, {"prompt": "hi"}, Origin="http://evil.test")
    assert_error(response, 403, "origin_not_allowed")


# --- 413 request_too_large ------------------------------------------------------------------


async def test_a_body_over_the_limit_is_413(client: httpx.AsyncClient, apps: Apps) -> None:
    app = await apps.add()
    body = {"prompt": "hi", "metadata": {"pad": "x" * MAX_BODY_BYTES}}
    error = assert_error(await post_ask(client, app, body), 413, "request_too_large")
    assert str(MAX_BODY_BYTES) in error["message"]


async def test_a_chunked_body_over_the_limit_is_413(client: httpx.AsyncClient, apps: Apps) -> None:
    """No Content-Length to trust: the limit holds while the body is read."""
    app = await apps.add()

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"prompt": "'
        for _ in range(MAX_BODY_BYTES // 1024 + 1):
            yield b"x" * 1024
        yield b'"}'

    response = await client.post("/ask", content=chunks(), headers={**app.auth, **JSON})
    assert "content-length" not in response.request.headers
    assert_error(response, 413, "request_too_large")


@pytest.mark.parametrize("shape", ["prompt", "messages"])
async def test_a_prompt_over_the_limit_is_413(
    client: httpx.AsyncClient, apps: Apps, shape: str
) -> None:
    app = await apps.add()
    half = "y" * (MAX_PROMPT_CHARS // 2 + 1)
    if shape == "prompt":
        body: dict[str, Any] = {"prompt": half * 2}
    else:  # each message is under the limit, together they are not
        body = {"messages": [{"role": "user", "content": half}] * 2}
    assert len(str(body)) < MAX_BODY_BYTES
    error = assert_error(await post_ask(client, app, body), 413, "request_too_large")
    assert str(MAX_PROMPT_CHARS) in error["message"]


# --- 400 model_not_allowed ------------------------------------------------------------------


async def test_a_model_not_allowed_for_the_app_is_400(
    client: httpx.AsyncClient, apps: Apps
) -> None:
    app = await apps.add(allow_models=("gpt-4o",))
    error = assert_error(
        await post_ask(client, app, {"prompt": "hi", "model": "gpt-4.1-mini"}),
        400,
        "model_not_allowed",
    )
    assert "gpt-4.1-mini" in error["message"]
    ok = await post_ask(client, app, {"prompt": "hi", "model": "gpt-4o", "stream": False})
    assert ok.status_code == 200
    assert ok.json()["model"] == "gpt-4o"


# --- upstream failures before the stream ----------------------------------------------------


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
@pytest.mark.parametrize(
    ("directive", "status", "code"),
    [
        ("[fail:500]", 502, "upstream_error"),
        ("[fail:503]", 503, "upstream_unavailable"),
        ("[fail:401]", 502, "upstream_auth_failed"),
        ("[fail:403]", 502, "upstream_auth_failed"),
    ],
)
async def test_upstream_errors_map_to_gateway_codes(
    client: httpx.AsyncClient, apps: Apps, directive: str, status: int, code: str, stream: bool
) -> None:
    app = await apps.add()
    response = await post_ask(client, app, {"prompt": f"Please {directive}", "stream": stream})
    assert_error(response, status, code)
    assert app.provider_key is not None
    assert app.provider_key not in response.text
    assert app.provider_key[:8] not in response.text  # not even OpenAI's masked form


async def test_upstream_auth_failure_blames_the_apps_key_not_the_callers_token(
    client: httpx.AsyncClient, apps: Apps
) -> None:
    app = await apps.add()
    error = assert_error(
        await post_ask(client, app, {"prompt": "[fail:401]"}), 502, "upstream_auth_failed"
    )
    assert "provider key" in error["message"]


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
async def test_upstream_rate_limit_keeps_its_code_and_retry_after(
    client: httpx.AsyncClient, apps: Apps, stream: bool
) -> None:
    app = await apps.add()
    response = await post_ask(client, app, {"prompt": "[fail:429]", "stream": stream})
    assert_error(response, 429, "upstream_rate_limited")
    assert response.headers["retry-after"] == "1"  # the fake's Retry-After


async def test_an_unreachable_upstream_is_503(client: httpx.AsyncClient, apps: Apps) -> None:
    closed = f"http://127.0.0.1:{free_port()}/v1"
    app = await apps.add(base_url=closed)
    for stream in (True, False):
        response = await post_ask(client, app, {"prompt": "hi", "stream": stream})
        assert_error(response, 503, "upstream_unavailable")


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
async def test_a_silent_upstream_is_504_within_the_first_token_timeout(
    client: httpx.AsyncClient, apps: Apps, stream: bool
) -> None:
    app = await apps.add()
    started = time.monotonic()
    response = await post_ask(client, app, {"prompt": "[hang]", "stream": stream})
    elapsed = time.monotonic() - started
    assert_error(response, 504, "upstream_timeout")
    assert FIRST_TOKEN_TIMEOUT_S * 0.9 <= elapsed < FIRST_TOKEN_TIMEOUT_S + 1.0, elapsed


# --- failures after the stream started ------------------------------------------------------


async def test_upstream_death_mid_stream_ends_with_an_error_event(
    client: httpx.AsyncClient, apps: Apps
) -> None:
    app = await apps.add()
    streamed = await ask_stream(client, app, {"prompt": "Go on [die-after:3] [tokens:10]"})
    assert streamed.names == ["delta", "delta", "delta", "error"], streamed.names
    error = streamed.events[-1].json
    assert set(error) == {"code", "message", "request_id"}
    assert error["code"] == "upstream_error"
    assert error["request_id"] == streamed.request_id
    assert streamed.response.status_code == 200


async def test_an_upstream_that_goes_silent_mid_stream_ends_with_an_error_event(
    client: httpx.AsyncClient, apps: Apps
) -> None:
    app = await apps.add()
    gap_ms = round(IDLE_TIMEOUT_S * 1000 * 4)
    started = time.monotonic()
    streamed = await ask_stream(client, app, {"prompt": f"[tokens:3] [token-ms:{gap_ms}]"})
    elapsed = time.monotonic() - started
    assert streamed.names == ["delta", "error"], streamed.names
    error = streamed.events[-1].json
    assert error["code"] == "upstream_timeout"
    assert error["request_id"] == streamed.request_id
    assert IDLE_TIMEOUT_S * 0.9 <= elapsed < IDLE_TIMEOUT_S + 1.0, elapsed
    assert all(b.data == "ping" for b in streamed.blocks if b.is_comment)


async def test_unknown_routes_and_methods_answer_in_our_shape(
    client: httpx.AsyncClient, apps: Apps
) -> None:
    app = await apps.add()
    assert_error(await client.get("/nowhere", headers=app.auth), 404, "not_found")
    assert_error(await client.get("/ask", headers=app.auth), 405, "invalid_request")
