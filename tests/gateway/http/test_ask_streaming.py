"""POST /ask over a real socket: incremental deltas, the SSE contract, the per-app upstream."""

from __future__ import annotations

import itertools
import secrets
from typing import Any

import httpx
import pytest

from tests.gateway.http.conftest import (
    FAST_FAKE_TOKENS,
    MODEL,
    PING_INTERVAL_S,
    SLOW_FAKE_TOKEN_MS,
    TLS,
    Apps,
    Fake,
    ask_stream,
    assert_no_traceback,
)

pytestmark = pytest.mark.anyio


def marker() -> str:
    return f"nonce-{secrets.token_hex(6)}"


async def fake_usage(fake: Fake, record: dict[str, Any]) -> dict[str, int]:
    """The usage the fake reports for exactly the body it received, asked again without stream."""
    body = {k: v for k, v in record["body"].items() if k not in ("stream", "stream_options")}
    async with httpx.AsyncClient(timeout=5, verify=TLS) as http:
        response = await http.post(
            f"{fake.base_url}/chat/completions",
            json={**body, "stream": False},
            headers={"Authorization": record["authorization"]},
        )
    assert response.status_code == 200, response.text
    usage: dict[str, int] = response.json()["usage"]
    return usage


async def test_deltas_arrive_incrementally_as_the_upstream_streams(
    client: httpx.AsyncClient, apps: Apps, slow_fake: Fake
) -> None:
    app = await apps.add(slow_fake)
    tokens = 20
    streamed = await ask_stream(client, app, {"prompt": f"Count with me [tokens:{tokens}]"})
    deltas = [e for e in streamed.events if e.name == "delta"]
    assert len(deltas) == tokens
    spread = deltas[-1].at - deltas[0].at
    generation = (tokens - 1) * SLOW_FAKE_TOKEN_MS / 1000  # 0.57 s at the fake
    # Buffered, all deltas would arrive together; streamed, they are spread like the fake's.
    assert spread >= 0.6 * generation, [round(d.at - streamed.started, 3) for d in deltas]
    first_half = [d for d in deltas if d.at - deltas[0].at < spread / 2]
    assert 3 <= len(first_half) <= tokens - 3
    assert all(b.at >= a.at for a, b in itertools.pairwise(deltas))


async def test_sse_headers_and_request_id(client: httpx.AsyncClient, apps: Apps) -> None:
    app = await apps.add()
    streamed = await ask_stream(client, app, {"prompt": "Hello"})
    headers = streamed.response.headers
    assert headers["content-type"].split(";")[0] == "text/event-stream"
    assert headers["cache-control"] == "no-cache"
    assert headers["x-accel-buffering"] == "no"
    assert headers["x-request-id"].startswith("req_")
    assert "content-length" not in headers


async def test_deltas_then_exactly_one_done_with_the_fakes_usage(
    client: httpx.AsyncClient, apps: Apps, fake: Fake
) -> None:
    app = await apps.add()
    nonce = marker()
    streamed = await ask_stream(client, app, {"prompt": f"Tell me a story {nonce}"})
    names = streamed.names
    assert names == ["delta"] * FAST_FAKE_TOKENS + ["done"], names
    # Every event is numbered, 1, 2, 3…: what a reader resumes from (Last-Event-ID).
    assert [e.id for e in streamed.events] == list(range(1, FAST_FAKE_TOKENS + 2))
    assert all(e.json == {"text": e.json["text"]} and e.json["text"] for e in streamed.events[:-1])
    done = streamed.events[-1].json
    assert set(done) == {"request_id", "finish_reason", "model", "usage"}
    assert done["request_id"] == streamed.request_id
    assert done["finish_reason"] == "stop"
    assert done["model"] == MODEL
    record = await fake.request_with(nonce)
    expected = await fake_usage(fake, record)
    assert done["usage"] == {
        "prompt_tokens": expected["prompt_tokens"],
        "completion_tokens": expected["completion_tokens"],
        "total_tokens": expected["prompt_tokens"] + expected["completion_tokens"],
    }
    assert done["usage"]["completion_tokens"] == record["chunks_sent"] == FAST_FAKE_TOKENS


async def test_pings_while_the_upstream_is_silent_before_the_first_token(
    client: httpx.AsyncClient, apps: Apps
) -> None:
    app = await apps.add()
    silence_ms = round(PING_INTERVAL_S * 1000 * 3.5)  # longer than the ping interval
    streamed = await ask_stream(
        client, app, {"prompt": f"Think first [first-token-ms:{silence_ms}] [tokens:2]"}
    )
    first_delta = next(i for i, b in enumerate(streamed.blocks) if b.name == "delta")
    pings = [b for b in streamed.blocks[:first_delta] if b.is_comment]
    assert len(pings) >= 2, [(b.name, b.data) for b in streamed.blocks]
    assert all(p.data == "ping" for p in pings)
    assert streamed.names == ["delta", "delta", "done"]


async def test_pings_while_the_upstream_is_silent_between_tokens(
    client: httpx.AsyncClient, apps: Apps
) -> None:
    app = await apps.add()
    gap_ms = round(PING_INTERVAL_S * 1000 * 3.5)
    streamed = await ask_stream(client, app, {"prompt": f"Slowly [token-ms:{gap_ms}] [tokens:2]"})
    kinds = ["ping" if b.is_comment else b.name for b in streamed.blocks]
    assert kinds[0] == "delta" and kinds[-2:] == ["delta", "done"], kinds
    assert kinds.count("ping") >= 2, kinds
    assert all(b.data == "ping" for b in streamed.blocks if b.is_comment)


@pytest.mark.parametrize(
    ("extra", "headers"),
    [({"stream": False}, {}), ({}, {"Accept": "application/json"})],
    ids=["stream-false", "accept-json"],
)
async def test_json_answer_when_asked(
    client: httpx.AsyncClient,
    apps: Apps,
    fake: Fake,
    extra: dict[str, Any],
    headers: dict[str, str],
) -> None:
    app = await apps.add()
    nonce = marker()
    prompt = f"Same prompt {nonce}"
    streamed = await ask_stream(client, app, {"prompt": prompt})
    response = await client.post(
        "/ask", json={"prompt": prompt, **extra}, headers=app.auth | headers
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert_no_traceback(response.text)
    body = response.json()
    assert set(body) == {"request_id", "text", "finish_reason", "model", "usage"}
    assert body["request_id"] == response.headers["x-request-id"] != streamed.request_id
    # The fake's answer is a function of the messages: the same text as the streamed answer.
    assert body["text"] == streamed.text
    assert body["finish_reason"] == "stop"
    assert body["model"] == MODEL
    assert body["usage"] == streamed.events[-1].json["usage"]
    received = await fake.requests_with(nonce)
    assert [r["stream"] for r in received] == [True, False]


async def test_system_prompt_is_prepended_and_max_tokens_capped(
    client: httpx.AsyncClient, apps: Apps, fake: Fake
) -> None:
    app = await apps.add(system_prompt="You answer in four words.", max_output_tokens=4)
    nonce = marker()
    streamed = await ask_stream(client, app, {"prompt": f"Hi {nonce}", "max_tokens": 100})
    record = await fake.request_with(nonce)
    assert record["body"]["messages"] == [
        {"role": "system", "content": "You answer in four words."},
        {"role": "user", "content": f"Hi {nonce}"},
    ]
    assert record["body"]["max_tokens"] == 4
    assert streamed.names == ["delta"] * 4 + ["done"]
    assert streamed.events[-1].json["finish_reason"] == "length"

    smaller = marker()
    messages = [
        {"role": "user", "content": "First"},
        {"role": "assistant", "content": "Answer"},
        {"role": "user", "content": f"Again {smaller}"},
    ]
    await ask_stream(client, app, {"messages": messages, "max_tokens": 2})
    record = await fake.request_with(smaller)
    assert record["body"]["messages"] == [
        {"role": "system", "content": "You answer in four words."},
        *messages,
    ]
    assert record["body"]["max_tokens"] == 2


async def test_each_app_uses_its_own_key_and_base_url(
    client: httpx.AsyncClient, apps: Apps, fake: Fake, slow_fake: Fake
) -> None:
    first = await apps.add(fake)
    second = await apps.add(slow_fake)
    assert first.provider_key != second.provider_key
    nonces = {first.name: marker(), second.name: marker()}
    for app in (first, second):
        streamed = await ask_stream(
            client, app, {"prompt": f"Who am I? {nonces[app.name]} [tokens:2]"}
        )
        assert streamed.names[-1] == "done"
    for app, own, other in ((first, fake, slow_fake), (second, slow_fake, fake)):
        record = await own.request_with(nonces[app.name])
        assert record["authorization"] == f"Bearer {app.provider_key}"
        assert record["path"] == "/v1/chat/completions"
        assert await other.requests_with(nonces[app.name]) == []
