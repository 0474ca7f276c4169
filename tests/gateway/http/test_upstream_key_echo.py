"""An upstream that repeats the key it was given: the key never reaches a client, a record or
the gateway's log, whatever its form (sk-, sk-proj-, Azure's 32 hex digits, any 40 characters).

The upstream is a raw server in this process that echoes the presented key in its 400, 401 and
429 bodies (whole, in pieces, masked, as OpenAI and compatible servers do) and inside a stream
(an ``error`` event after the first chunk). Clients: httpx on /ask (SSE and JSON) and the
official ``openai`` SDK on /v1/chat/completions.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio.lowlevel
import httpx
import openai
import pytest
from anyio.abc import SocketStream

from gateway.services import apps as app_service
from gateway.storage import request_logs
from gateway.storage.database import Database
from tests.gateway.http.conftest import (
    MODEL,
    AppHandle,
    Apps,
    Gateway,
    poll,
    wait_for_records,
)
from tests.gateway.upstream.raw_server import RawRequest, RawServer, answer, chunk_json, raw_server

pytestmark = pytest.mark.anyio

PIECE = 8
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

KEYS = {
    "sk": lambda: "sk-" + secrets.token_urlsafe(36),
    "sk-proj": lambda: "sk-proj-" + secrets.token_urlsafe(120),
    "azure-hex": lambda: secrets.token_hex(16),
    "arbitrary-40": lambda: "".join(secrets.choice(ALPHABET) for _ in range(40)),
}


def echoes(key: str) -> str:
    """Everything an upstream may say about the key it was given."""
    return (
        f"Incorrect API key provided: {key}. Masked: {key[:8]}{'*' * 20}{key[-4:]}; "
        f"starts with {key[:12]}, ends with {key[-12:]}."
    )


def presented_key(request: RawRequest) -> str:
    return request.headers["authorization"].removeprefix("Bearer ").strip()


async def echoing_upstream(request: RawRequest, stream: SocketStream) -> None:
    """``[echo:STATUS]`` in the prompt: that status, with the key in the error's message."""
    key = presented_key(request)
    body = request.body.decode()
    for status in (400, 401, 429):
        if f"[echo:{status}]" in body:
            error = {"message": echoes(key), "type": "invalid_request_error", "code": None}
            await answer(status, {"error": error}, headers=[("retry-after", "0")])(request, stream)
            return
    # [echo:stream]: a first chunk, then an error event that repeats the key.
    error = json.dumps({"error": {"message": echoes(key), "type": "server_error"}})
    payloads = [chunk_json(), error]
    await stream.send(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n"
        + b"".join(f"data: {p}\n\n".encode() for p in payloads)
        + b"data: [DONE]\n\n"
    )


def leaks(key: str, text: str) -> list[str]:
    """The pieces of ``key`` (PIECE characters or more) that ``text`` holds."""
    return [key[i : i + PIECE] for i in range(len(key) - PIECE + 1) if key[i : i + PIECE] in text]


@pytest.fixture
async def upstream() -> AsyncIterator[RawServer]:
    async with raw_server(echoing_upstream) as server:
        yield server


async def ask_texts(client: httpx.AsyncClient, app: AppHandle) -> tuple[list[str], list[str]]:
    """Every /ask body for each echoed status, streamed and not; their request ids."""
    texts, ids = [], []
    for status in (400, 401, 429):
        for stream in (True, False):
            body = {"prompt": f"[echo:{status}] hi", "stream": stream}
            response = await client.post("/ask", json=body, headers=app.auth)
            assert response.status_code in (429, 502), response.text
            assert response.json()["error"]["code"].startswith("upstream_"), response.text
            texts.append(response.text)
            ids.append(response.headers["x-request-id"])
    # After the first chunk: the stream ends with an SSE event (or completes), never the key.
    body = {"prompt": "[echo:stream] hi"}
    async with client.stream("POST", "/ask", json=body, headers=app.auth) as streamed:
        texts.append((await streamed.aread()).decode())
        ids.append(streamed.headers["x-request-id"])
    return texts, ids


async def sdk_texts(client: openai.AsyncOpenAI) -> list[str]:
    """What the SDK shows of each /v1 error: its message and the body it parsed."""
    texts: list[str] = []
    for status in (400, 401, 429):
        for stream in (False, True):
            messages = [{"role": "user", "content": f"[echo:{status}] hi"}]
            with pytest.raises(openai.APIStatusError) as caught:
                if stream:
                    async for _ in await client.chat.completions.create(
                        model=MODEL, messages=messages, stream=True
                    ):
                        pass
                else:
                    await client.chat.completions.create(model=MODEL, messages=messages)
            texts += [str(caught.value), json.dumps(caught.value.body), caught.value.response.text]
    messages = [{"role": "user", "content": "[echo:stream] hi"}]
    with pytest.raises(openai.APIError) as raised:
        async for _ in await client.chat.completions.create(
            model=MODEL, messages=messages, stream=True
        ):
            pass
    texts += [str(raised.value), json.dumps(raised.value.body)]
    assert "[redacted]" in texts[-1], texts[-1]
    return texts


async def stored_rows(gateway: Gateway, app: AppHandle) -> str:
    async def rows(db: Database) -> str:
        async with db.read() as session:
            found = await request_logs.find_logs(
                session, request_logs.LogFilter(app_id=app.id), limit=100
            )
            return json.dumps([row.model_dump(mode="json") for row in found])

    return await gateway.with_database(rows)


@pytest.mark.parametrize("kind", sorted(KEYS))
async def test_an_echoed_key_never_reaches_a_client_a_record_or_the_log(
    kind: str,
    client: httpx.AsyncClient,
    gateway: Gateway,
    apps: Apps,
    upstream: RawServer,
    sdk: Any,
) -> None:
    key = KEYS[kind]()
    app = await apps.add(base_url=upstream.base_url, provider_key=key, log_content="full")

    texts, ids = await ask_texts(client, app)
    texts += await sdk_texts(sdk(app.token))
    assert upstream.requests and all(presented_key(r) == key for r in upstream.requests)
    for text in texts:
        assert not leaks(key, text), (kind, text)
    # The upstream's own words are still there (only the key went).
    assert any("Incorrect API key provided: [redacted]" in text for text in texts), texts

    records = await wait_for_records(client, ids, token=app.token)
    assert not leaks(key, json.dumps(records))
    assert not leaks(key, await stored_rows(gateway, app))

    log = await poll(_stderr(gateway), lambda text: all(rid in text for rid in ids))
    assert not leaks(key, log)


async def test_a_key_echoed_by_the_moderation_endpoint_never_reaches_the_client(
    client: httpx.AsyncClient, gateway: Gateway, apps: Apps, upstream: RawServer
) -> None:
    """The moderated workflow calls /moderations with the app's key first: same rule."""
    key = KEYS["azure-hex"]()
    app = await apps.add(base_url=upstream.base_url, provider_key=key)
    changes = app_service.AppChanges(workflow="moderated")
    await gateway.with_database(lambda db: app_service.update_app(db, app.name, changes))
    ids = []
    for status in (400, 429):
        body = {"prompt": f"[echo:{status}] hi", "stream": False}
        # The first run of a workflow loads it: a slow start may time out once, then answers.
        for _ in range(3):
            response = await client.post("/ask", json=body, headers=app.auth)
            if response.json()["error"]["code"] != "upstream_timeout":
                break
        assert response.status_code in (429, 502), response.text
        assert "Incorrect API key provided: [redacted]" in response.text
        assert not leaks(key, response.text), response.text
        ids.append(response.headers["x-request-id"])
    assert any(r.path.endswith("/moderations") for r in upstream.requests)
    records = await wait_for_records(client, ids, token=app.token)
    assert not leaks(key, json.dumps(records))
    log = await poll(_stderr(gateway), lambda text: all(rid in text for rid in ids))
    assert not leaks(key, log)


def _stderr(gateway: Gateway) -> Callable[[], Awaitable[str]]:
    async def logged() -> str:
        await anyio.lowlevel.checkpoint()
        return gateway.server.stderr()

    return logged
