"""After real traffic, the gateway's own log output holds no client token and no provider key."""

from __future__ import annotations

import json
import secrets

import anyio.lowlevel
import httpx
import pytest

from tests.gateway.http.conftest import (
    ADMIN_TOKEN,
    Apps,
    Gateway,
    ask_stream,
    poll,
    sse_events,
)

pytestmark = pytest.mark.anyio


async def traffic(client: httpx.AsyncClient, gateway: Gateway, apps: Apps) -> list[str]:
    """Successes and failures of every kind; the request ids."""
    app = await apps.add(log_content="full", origins=("http://leak.test",))
    unknown = "orc_" + secrets.token_urlsafe(32)
    apps.secrets.add(unknown)
    ids: list[str] = []

    async def post(path: str, body: object, headers: dict[str, str]) -> None:
        response = await client.post(path, json=body, headers=headers)
        ids.append(response.headers["x-request-id"])

    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    ids.append((await ask_stream(client, app, {"prompt": "hello"})).request_id)
    ids.append((await ask_stream(client, app, {"prompt": "[die-after:1]"})).request_id)
    await post("/ask", {"prompt": "hi", "stream": False}, app.auth)
    await post("/v1/chat/completions", chat, app.auth)
    await post("/v1/chat/completions", {**chat, "stream": True}, app.auth)
    for directive in ("[fail:401]", "[fail:403]", "[fail:429]", "[fail:500]", "[hang]"):
        await post("/ask", {"prompt": directive}, app.auth)
    await post("/ask", {"prompt": ""}, app.auth)
    await post("/ask", {"prompt": "hi"}, {**app.auth, "Origin": "http://other.test"})
    await post("/ask", {"prompt": "hi"}, {"Authorization": f"Bearer {unknown}"})
    await post("/ask", {"prompt": "hi"}, {"Authorization": f"Bearer {app.provider_key}"})
    await post("/ask", {"prompt": "hi"}, {"Authorization": app.token})  # no scheme
    await post(f"/ask?token={app.token}", {"prompt": "hi"}, {})
    for path in ("/logs", "/status", "/v1/models"):
        response = await client.get(path, headers=app.auth)
        ids.append(response.headers["x-request-id"])
    response = await client.get("/logs", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    ids.append(response.headers["x-request-id"])
    async with gateway.client() as own:  # a client that leaves mid-stream
        body = {"prompt": "[tokens:200] [token-ms:10]"}
        async with own.stream("POST", "/ask", json=body, headers=app.auth) as streamed:
            ids.append(streamed.headers["x-request-id"])
            async for _ in sse_events(streamed):
                break
    return ids


async def test_no_token_or_key_reaches_the_gateways_log(
    client: httpx.AsyncClient, gateway: Gateway, apps: Apps, issued_secrets: set[str]
) -> None:
    request_ids = await traffic(client, gateway, apps)

    async def logged() -> str:
        await anyio.lowlevel.checkpoint()
        return gateway.server.stderr()

    # Every request above has been logged (so the check below looks at real output).
    text = await poll(logged, lambda t: all(rid in t for rid in request_ids))
    # Whole lines only (the gateway may be writing the next one as we read), split on "\n"
    # alone: str.splitlines() also splits on U+2028 and friends, which a logged (fuzzed)
    # path may hold raw inside a JSON string.
    complete = text[: text.rfind("\n") + 1]
    lines = [json.loads(line) for line in complete.split("\n") if line.strip()]
    assert any(line["record"]["message"] == "request" for line in lines)
    assert len(issued_secrets) > 3
    leaked = set()
    for secret in issued_secrets:
        # The whole secret, or its random tail (in case a prefix was cut or masked).
        if secret in text or secret[-16:] in text:
            leaked.add(secret[:8] + "…")
    assert not leaked, f"secrets in the gateway's stderr: {sorted(leaked)}"
    stdout = gateway.server.stderr_path.with_suffix(".out").read_text()
    assert not [s for s in issued_secrets if s in stdout]
