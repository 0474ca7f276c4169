"""A client that leaves: the upstream call is cancelled at once and the interaction recorded."""

from __future__ import annotations

import secrets
import time
from typing import Any

import anyio
import httpx
import pytest

from tests.gateway.http.conftest import (
    MODEL,
    AppHandle,
    Apps,
    Fake,
    Gateway,
    poll,
    sse_events,
    wait_for_records,
)

pytestmark = pytest.mark.anyio

CANCEL_BOUND_S = 1.0


async def cancelled_record(fake: Fake, nonce: str) -> dict[str, Any]:
    async def get() -> dict[str, Any]:
        return await fake.request_with(nonce)

    return await poll(get, lambda r: r["status"] != "in_progress")


async def stream_then_leave(
    gateway: Gateway, app: AppHandle, prompt: str, *, deltas: int
) -> tuple[str, int, float]:
    """Read ``deltas`` delta events, then drop the connection: (request id, deltas read, when)."""
    seen = 0
    async with gateway.client() as own:
        async with own.stream("POST", "/ask", json={"prompt": prompt}, headers=app.auth) as r:
            assert r.status_code == 200
            request_id = r.headers["x-request-id"]
            async for event in sse_events(r):
                assert event.name in (None, "delta"), event
                seen += event.name == "delta"
                if seen == deltas:
                    break
        left = time.time()
    return request_id, seen, left


async def assert_recorded_as_disconnected(
    client: httpx.AsyncClient, app: AppHandle, request_id: str, *, seen: int, sent: int
) -> dict[str, Any]:
    records = await wait_for_records(client, [request_id], token=app.token)
    (record,) = [r for r in records if r["request_id"] == request_id]
    assert record["outcome"] == "client_disconnected", record
    assert record["app"] == app.name
    assert record["route"] == "/ask"
    # The tokens seen so far: at least what the client read, at most what the upstream sent.
    assert seen <= record["completion_tokens"] <= sent, (record, seen, sent)
    assert record["prompt_tokens"] > 0
    return record


async def test_leaving_mid_stream_cancels_the_upstream_within_a_second(
    client: httpx.AsyncClient, gateway: Gateway, apps: Apps, fake: Fake
) -> None:
    app = await apps.add()
    nonce = f"leave-{secrets.token_hex(6)}"
    request_id, seen, left = await stream_then_leave(
        gateway, app, f"A long answer {nonce} [tokens:400] [token-ms:20]", deltas=3
    )
    record = await cancelled_record(fake, nonce)
    assert record["status"] == "cancelled", record
    assert record["ended_at"] - left < CANCEL_BOUND_S, record["ended_at"] - left
    assert record["chunks_sent"] < 100, record
    await assert_recorded_as_disconnected(
        client, app, request_id, seen=seen, sent=record["chunks_sent"]
    )


async def test_leaving_while_the_upstream_is_silent_cancels_it_too(
    client: httpx.AsyncClient, gateway: Gateway, apps: Apps, fake: Fake
) -> None:
    """Nothing is being sent when the client leaves, so only the disconnect watch can notice."""
    app = await apps.add()
    nonce = f"silent-{secrets.token_hex(6)}"
    request_id, seen, left = await stream_then_leave(
        gateway, app, f"Pause {nonce} [tokens:3] [token-ms:1400]", deltas=1
    )
    record = await cancelled_record(fake, nonce)
    assert record["status"] == "cancelled", record
    assert record["ended_at"] - left < CANCEL_BOUND_S, record["ended_at"] - left
    assert record["chunks_sent"] == 1
    await assert_recorded_as_disconnected(client, app, request_id, seen=seen, sent=1)


def request_for(route: str, text: str, *, stream: bool) -> dict[str, Any]:
    if route == "/ask":
        return {"prompt": text, "stream": stream}
    return {"model": MODEL, "messages": [{"role": "user", "content": text}], "stream": stream}


async def leave_before_the_answer(
    gateway: Gateway, app: AppHandle, route: str, body: dict[str, Any]
) -> float:
    """Send the request, give up after 0.3 s (no whole answer yet), drop the connection; when."""
    async with gateway.client() as own:
        with anyio.move_on_after(0.3):
            response = await own.post(route, json=body, headers=app.auth)
            pytest.fail(f"answered before the client gave up: {response.status_code}")
    return time.time()


async def assert_cancelled_and_recorded(
    client: httpx.AsyncClient, app: AppHandle, fake: Fake, nonce: str, left: float, route: str
) -> None:
    record = await cancelled_record(fake, nonce)
    assert record["status"] == "cancelled", record
    assert record["ended_at"] - left < CANCEL_BOUND_S, record["ended_at"] - left
    assert record["chunks_sent"] == 0
    records = await poll(lambda: wait_for_records(client, [], token=app.token), lambda rs: rs != [])
    assert [(r["outcome"], r["route"], r["completion_tokens"]) for r in records] == [
        ("client_disconnected", route, 0)
    ], records


ROUTES = pytest.mark.parametrize("route", ["/ask", "/v1/chat/completions"])


@ROUTES
async def test_leaving_before_the_first_token_cancels_the_upstream(
    client: httpx.AsyncClient, gateway: Gateway, apps: Apps, fake: Fake, route: str
) -> None:
    """The client gives up while the model is still thinking (headers may be sent already)."""
    app = await apps.add()
    nonce = f"early-{secrets.token_hex(6)}"
    body = request_for(route, f"Think {nonce} [first-token-ms:1400] [tokens:3]", stream=True)
    left = await leave_before_the_answer(gateway, app, route, body)
    await assert_cancelled_and_recorded(client, app, fake, nonce, left, route)


@ROUTES
async def test_leaving_before_the_upstream_sends_anything_cancels_it(
    client: httpx.AsyncClient, gateway: Gateway, apps: Apps, fake: Fake, route: str
) -> None:
    """No event from the upstream yet, so no headers to the client: the peek is interrupted."""
    app = await apps.add()
    nonce = f"peek-{secrets.token_hex(6)}"
    body = request_for(route, f"Wait {nonce} [hang]", stream=True)
    left = await leave_before_the_answer(gateway, app, route, body)
    await assert_cancelled_and_recorded(client, app, fake, nonce, left, route)


@ROUTES
async def test_leaving_a_json_answer_cancels_the_upstream(
    client: httpx.AsyncClient, gateway: Gateway, apps: Apps, fake: Fake, route: str
) -> None:
    app = await apps.add()
    nonce = f"json-{secrets.token_hex(6)}"
    body = request_for(route, f"Slow {nonce} [first-token-ms:1400]", stream=False)
    left = await leave_before_the_answer(gateway, app, route, body)
    await assert_cancelled_and_recorded(client, app, fake, nonce, left, route)
