"""The fake OpenAI server, run as a real uvicorn server and spoken to over HTTP.

Clients: httpx for the exact wire format, the official ``openai`` SDK for compatibility.
"""

from __future__ import annotations

import json
import random
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import openai
import pytest

from gateway.fakes.encoding import SYSTEM_FINGERPRINT
from gateway.fakes.errors import mask_key
from gateway.fakes.openai_server import FakeOpenAIConfig
from gateway.fakes.prompt import Directives, parse_directives
from tests.gateway.fakes.harness import (
    CHAT,
    KEY,
    MODEL,
    Fake,
    chat_body,
    parse_sse,
    stream_chat,
)

REPO = Path(__file__).resolve().parents[3]


async def records(fake: Fake) -> list[dict[str, Any]]:
    async with fake.client() as client:
        response = await client.get("/_fake/requests")
        assert response.status_code == 200
        result: list[dict[str, Any]] = response.json()
        return result


async def record_for(fake: Fake, record_id: str) -> dict[str, Any]:
    (found,) = [r for r in await records(fake) if r["id"] == record_id]
    return found


async def wait_for_status(fake: Fake, record_id: str, status: str) -> dict[str, Any]:
    record: dict[str, Any] = {}
    for _ in range(100):
        record = await record_for(fake, record_id)
        if record["status"] == status:
            return record
        await anyio.sleep(0.01)
    raise AssertionError(f"record never became {status}: {record}")


# --- streaming ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_stream_has_openais_exact_chunk_shape_and_order(fake: Fake) -> None:
    async with fake.client() as client:
        events = await stream_chat(client, chat_body())
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert len(chunks) == 1 + 8 + 1
    first = chunks[0]
    assert re.fullmatch(r"chatcmpl-[0-9a-f]{30}", first["id"])
    assert abs(first["created"] - time.time()) < 5
    common = {
        "id": first["id"],
        "object": "chat.completion.chunk",
        "created": first["created"],
        "model": MODEL,
        "service_tier": "default",
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }

    def choice(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}

    assert first == {
        **common,
        "choices": [choice({"role": "assistant", "content": "", "refusal": None})],
    }
    words = [chunk["choices"][0]["delta"]["content"] for chunk in chunks[1:-1]]
    for chunk, word in zip(chunks[1:-1], words, strict=True):
        assert chunk == {**common, "choices": [choice({"content": word})]}
        assert re.fullmatch(r"[a-z]+ ", word)
    assert chunks[-1] == {**common, "choices": [choice({}, "stop")]}
    assert all("usage" not in chunk for chunk in chunks)
    assert events[0].startswith('{"id":"chatcmpl-')


@pytest.mark.anyio
async def test_stream_with_include_usage_adds_usage_chunk_and_null_usage(fake: Fake) -> None:
    body = chat_body(stream_options={"include_usage": True})
    async with fake.client() as client:
        events = await stream_chat(client, body)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert [c["choices"][0]["delta"] for c in chunks[:1]] == [
        {"role": "assistant", "content": "", "refusal": None}
    ]
    assert all(chunk["usage"] is None for chunk in chunks[:-1])
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    usage_chunk = chunks[-1]
    assert usage_chunk["choices"] == []
    assert usage_chunk["id"] == chunks[0]["id"]
    assert usage_chunk["object"] == "chat.completion.chunk"
    assert usage_chunk["usage"] == {
        "prompt_tokens": 3 + 3 + 2,
        "completion_tokens": 8,
        "total_tokens": 16,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


@pytest.mark.anyio
async def test_include_usage_false_sends_no_usage(fake: Fake) -> None:
    body = chat_body(stream_options={"include_usage": False})
    async with fake.client() as client:
        events = await stream_chat(client, body)
    chunks = [json.loads(event) for event in events[:-1]]
    assert len(chunks) == 10
    assert all("usage" not in chunk for chunk in chunks)


@pytest.mark.anyio
@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
async def test_max_tokens_below_token_count_finishes_with_length(fake: Fake, field: str) -> None:
    body = chat_body(stream_options={"include_usage": True}, **{field: 3})
    async with fake.client() as client:
        events = await stream_chat(client, body)
        full = (await client.post(CHAT, json=chat_body())).json()
    chunks = [json.loads(event) for event in events[:-1]]
    contents = [c["choices"][0]["delta"].get("content") for c in chunks[1:-2]]
    assert len(contents) == 3
    assert full["choices"][0]["message"]["content"].startswith("".join(contents))
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["usage"]["completion_tokens"] == 3


@pytest.mark.anyio
async def test_max_tokens_at_or_above_token_count_finishes_with_stop(fake: Fake) -> None:
    async with fake.client() as client:
        response = await client.post(CHAT, json=chat_body(max_tokens=8))
    assert response.json()["choices"][0]["finish_reason"] == "stop"
    assert response.json()["usage"]["completion_tokens"] == 8


# --- non-stream -----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_non_stream_is_an_exact_chat_completion(fake: Fake) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello, world!"},
    ]
    async with fake.client() as client:
        response = await client.post(CHAT, json={"model": "gpt-4o", "messages": messages})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"].startswith("req_")
    data = response.json()
    content = data["choices"][0]["message"]["content"]
    assert re.fullmatch(r"([a-z]+ ){8}", content)
    assert re.fullmatch(r"chatcmpl-[0-9a-f]{30}", data["id"])
    assert data == {
        "id": data["id"],
        "object": "chat.completion",
        "created": data["created"],
        "model": "gpt-4o",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": content,
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            # 3 for the reply + per message 3 + tokens: "Be brief." = 3, "Hello, world!" = 4
            "prompt_tokens": 16,
            "completion_tokens": 8,
            "total_tokens": 24,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
        "service_tier": "default",
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }


@pytest.mark.anyio
async def test_answers_are_deterministic_per_prompt(fake: Fake) -> None:
    async with fake.client() as client:

        async def answer(content: str) -> str:
            response = await client.post(CHAT, json=chat_body(content))
            text: str = response.json()["choices"][0]["message"]["content"]
            return text

        first, again = await answer("What is ASGI?"), await answer("What is ASGI?")
        other = await answer("What is WSGI?")
        events = await stream_chat(client, chat_body("What is ASGI?"))
    streamed = "".join(json.loads(e)["choices"][0]["delta"].get("content", "") for e in events[:-1])
    assert first == again == streamed
    assert other != first


@pytest.mark.anyio
async def test_multimodal_content_parts_are_read_as_text(fake: Fake) -> None:
    parts = [{"type": "text", "text": "Describe"}, {"type": "image_url", "image_url": {"url": "x"}}]
    body = {"model": MODEL, "messages": [{"role": "user", "content": parts}]}
    async with fake.client() as client:
        response = await client.post(CHAT, json=body)
    assert response.status_code == 200
    assert response.json()["usage"]["prompt_tokens"] == 3 + 3 + 1


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_missing_key_is_401_invalid_api_key(fake: Fake) -> None:
    async with fake.client(headers={}) as client:
        response = await client.post(CHAT, json=chat_body())
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "invalid_api_key"
    assert error["param"] is None
    assert error["message"].startswith("You didn't provide an API key.")


@pytest.mark.anyio
@pytest.mark.parametrize("key", ["not-an-openai-key-987654321", "bad", "Bearer"])
async def test_invalid_key_is_401_and_never_echoed(fake: Fake, key: str) -> None:
    async with fake.client(headers={"Authorization": f"Bearer {key}"}) as client:
        response = await client.post(CHAT, json=chat_body())
        models = await client.get("/v1/models")
    assert response.status_code == 401
    assert models.status_code == 401
    assert response.json() == {
        "error": {
            "message": response.json()["error"]["message"],
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        }
    }
    message = response.json()["error"]["message"]
    assert message.startswith("Incorrect API key provided: ")
    assert key not in message
    assert "***" in message


@pytest.mark.anyio
async def test_configured_api_keys_are_the_only_ones_accepted(
    start_fake: Callable[[FakeOpenAIConfig], Fake],
) -> None:
    fake = start_fake(FakeOpenAIConfig(tokens=2, api_keys=frozenset({"team-key-1"})))
    async with fake.client(headers={"Authorization": "Bearer team-key-1"}) as client:
        assert (await client.post(CHAT, json=chat_body())).status_code == 200
    async with fake.client() as client:
        response = await client.post(CHAT, json=chat_body())
    assert response.status_code == 401
    assert "sk-te" in response.json()["error"]["message"]
    assert KEY not in response.json()["error"]["message"]


@pytest.mark.anyio
async def test_fail_429_has_retry_after_and_rate_limit_body(fake: Fake) -> None:
    async with fake.client() as client:
        response = await client.post(CHAT, json=chat_body("hi [fail:429]", stream=True))
    assert response.status_code == 429
    assert response.headers["retry-after"] == "1"
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["type"] == "requests"
    assert error["code"] == "rate_limit_exceeded"
    assert error["param"] is None
    assert error["message"].startswith(f"Rate limit reached for {MODEL}")


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "message"),
    [
        (500, "The server had an error while processing your request. Sorry about that!"),
        (503, "The server is overloaded or not ready yet."),
    ],
)
async def test_fail_5xx_has_server_error_body(fake: Fake, status: int, message: str) -> None:
    async with fake.client() as client:
        response = await client.post(CHAT, json=chat_body(f"[fail:{status}] hi", stream=True))
    assert response.status_code == status
    assert response.json() == {
        "error": {"message": message, "type": "server_error", "param": None, "code": None}
    }


@pytest.mark.anyio
async def test_fail_401_directive(fake: Fake) -> None:
    async with fake.client() as client:
        response = await client.post(CHAT, json=chat_body("[fail:401]"))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    assert KEY not in response.text


@pytest.mark.anyio
async def test_directives_outside_the_last_user_message_are_ignored(fake: Fake) -> None:
    messages = [
        {"role": "system", "content": "[fail:500]"},
        {"role": "user", "content": "[fail:500]"},
        {"role": "assistant", "content": "[fail:500]"},
        {"role": "user", "content": "fine [fail:600] [fail:abc]"},
    ]
    async with fake.client() as client:
        response = await client.post(CHAT, json={"model": MODEL, "messages": messages})
    assert response.status_code == 200


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("body", "param", "code", "message"),
    [
        (b"{not json", None, None, "We could not parse the JSON body of your request."),
        ({"model": MODEL}, "messages", "missing_required_parameter", "Missing required"),
        (
            {"messages": [{"role": "user", "content": "x"}]},
            "model",
            "missing_required_parameter",
            "Missing",
        ),
        ({"model": MODEL, "messages": []}, "messages", "empty_array", "Invalid 'messages'"),
        ({"model": MODEL, "messages": "hi"}, "messages", "invalid_type", "Invalid type"),
        (
            {"model": MODEL, "messages": [{"content": "x"}]},
            "messages[0].role",
            "invalid_value",
            "Invalid value",
        ),
        (
            chat_body(stream_options={"include_usage": True}),
            "stream_options",
            None,
            "The 'stream_options'",
        ),
        (chat_body(max_tokens=0), "max_tokens", "integer_below_min_value", "Invalid 'max_tokens'"),
        (chat_body(stream="yes"), "stream", "invalid_type", "Invalid type for 'stream'"),
    ],
)
async def test_bad_requests_are_400(
    fake: Fake, body: bytes | dict[str, Any], param: str | None, code: str | None, message: str
) -> None:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with fake.client() as client:
        response = await client.post(CHAT, content=content)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert (error["param"], error["code"]) == (param, code)
    assert error["message"].startswith(message)


@pytest.mark.anyio
async def test_unknown_model_and_unknown_url_are_404(fake: Fake) -> None:
    async with fake.client() as client:
        model = await client.post(CHAT, json={**chat_body(), "model": "gpt-9"})
        url = await client.post("/v1/nope", json={})
    assert model.status_code == 404
    assert model.json()["error"]["code"] == "model_not_found"
    assert "`gpt-9`" in model.json()["error"]["message"]
    assert url.status_code == 404
    assert url.json()["error"]["message"] == "Invalid URL (POST /v1/nope)"


# --- directives -----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_die_after_drops_the_stream_after_n_chunks(fake: Fake) -> None:
    received: list[str] = []

    async def read_all(client: httpx.AsyncClient) -> None:
        body = chat_body("[die-after:3]", stream=True)
        async with client.stream("POST", CHAT, json=body) as response:
            assert response.status_code == 200
            async for line in response.aiter_lines():
                if line:
                    received.append(line)

    async with fake.client() as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await read_all(client)
    assert len(received) == 1 + 3
    assert all('"finish_reason":null' in line for line in received)
    assert "data: [DONE]" not in received
    record_id = json.loads(received[0].removeprefix("data: "))["id"]
    record = await record_for(fake, record_id)
    assert (record["status"], record["chunks_sent"]) == ("failed", 3)


@pytest.mark.anyio
async def test_die_after_non_stream_truncates_the_body(fake: Fake) -> None:
    async with fake.client() as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post(CHAT, json=chat_body("[die-after:0]"))


@pytest.mark.anyio
async def test_hang_sends_headers_then_nothing_until_the_client_leaves(fake: Fake) -> None:
    async with fake.client() as client:
        body = chat_body("[hang]", stream=True)
        async with client.stream("POST", CHAT, json=body) as response:
            assert response.status_code == 200
            request_id = response.headers["x-request-id"]
            await anyio.sleep(0.1)
            pending = [r for r in await records(fake) if r["body"] == body]
            assert pending[-1]["status"] == "in_progress"
            with pytest.raises(TimeoutError):
                with anyio.fail_after(0.15):
                    await response.aread()
        closed_at = time.time()
    assert request_id.startswith("req_")
    record = await wait_for_status(fake, pending[-1]["id"], "cancelled")
    assert record["chunks_sent"] == 0
    assert record["ended_at"] - closed_at < 0.1


@pytest.mark.anyio
async def test_hang_non_stream_never_answers(fake: Fake) -> None:
    async with fake.client(timeout=0.2) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.post(CHAT, json=chat_body("[hang] please"))
    hung = [r for r in await records(fake) if r["body"] == chat_body("[hang] please")]
    assert (await wait_for_status(fake, hung[-1]["id"], "cancelled"))["status_code"] is None


@pytest.mark.anyio
@pytest.mark.parametrize(("count", "finish"), [(3, "stop"), (0, "stop"), (20, "stop")])
async def test_tokens_directive_sets_the_chunk_count(fake: Fake, count: int, finish: str) -> None:
    async with fake.client() as client:
        events = await stream_chat(client, chat_body(f"[tokens:{count}] go"))
        plain = await client.post(CHAT, json=chat_body(f"[tokens:{count}] go"))
    chunks = [json.loads(event) for event in events[:-1]]
    assert len(chunks) == count + 2
    assert chunks[-1]["choices"][0]["finish_reason"] == finish
    assert plain.json()["usage"]["completion_tokens"] == count


@pytest.mark.anyio
async def test_xss_answer_is_raw_html_split_across_chunks(fake: Fake) -> None:
    async with fake.client() as client:
        async with client.stream("POST", CHAT, json=chat_body("[xss]", stream=True)) as response:
            raw = await response.aread()
        plain = await client.post(CHAT, json=chat_body("[xss]"))
    events = parse_sse(raw)
    contents = [json.loads(e)["choices"][0]["delta"]["content"] for e in events[1:-2]]
    assert len(contents) >= 2
    assert "".join(contents) == "<img src=x onerror=alert(1)>"
    assert b'"content":"<img ' in raw  # not escaped on the wire
    assert plain.json()["choices"][0]["message"]["content"] == "<img src=x onerror=alert(1)>"


# --- timing and disconnects -----------------------------------------------------------------


async def timed_stream(client: httpx.AsyncClient, body: dict[str, Any]) -> list[float]:
    """Arrival times (relative to the request) of the content chunks."""
    started = time.perf_counter()
    arrivals: list[float] = []
    async with client.stream("POST", CHAT, json={**body, "stream": True}) as response:
        async for line in response.aiter_lines():
            if '"content":"' in line and '"role"' not in line:
                arrivals.append(time.perf_counter() - started)
    return arrivals


@pytest.mark.anyio
async def test_token_ms_delivers_chunks_incrementally(fake: Fake) -> None:
    async with fake.client() as client:
        arrivals = await timed_stream(client, chat_body("[tokens:5] [token-ms:40]"))
    assert len(arrivals) == 5
    assert arrivals[0] < 0.1
    assert arrivals[-1] - arrivals[0] >= 0.15
    assert arrivals == sorted(arrivals)


@pytest.mark.anyio
async def test_first_token_ms_delays_the_first_chunk(fake: Fake) -> None:
    async with fake.client() as client:
        arrivals = await timed_stream(client, chat_body("[tokens:2] [first-token-ms:150]"))
        started = time.perf_counter()
        await client.post(CHAT, json=chat_body("[tokens:4] [token-ms:40]"))
        plain_elapsed = time.perf_counter() - started
    assert arrivals[0] >= 0.14
    assert plain_elapsed >= 0.11


@pytest.mark.anyio
async def test_config_delays_apply_without_directives(
    start_fake: Callable[[FakeOpenAIConfig], Fake],
) -> None:
    fake = start_fake(FakeOpenAIConfig(tokens=3, first_token_ms=100, token_ms=50))
    async with fake.client() as client:
        arrivals = await timed_stream(client, chat_body())
    assert len(arrivals) == 3
    assert arrivals[0] >= 0.09
    assert arrivals[-1] - arrivals[0] >= 0.09


@pytest.mark.anyio
async def test_client_disconnect_cancels_the_stream_quickly(fake: Fake) -> None:
    body = chat_body("[tokens:200] [token-ms:20]", stream=True)
    async with fake.client() as client:
        async with client.stream("POST", CHAT, json=body) as response:
            lines = response.aiter_lines()
            first = await anext(lines)
            async for line in lines:
                if '"content":"' in line and '"role"' not in line:
                    break
        closed_at = time.time()
    record_id = json.loads(first.removeprefix("data: "))["id"]
    record = await wait_for_status(fake, record_id, "cancelled")
    assert record["ended_at"] - closed_at < 0.1
    assert 1 <= record["chunks_sent"] < 10
    await anyio.sleep(0.1)
    assert (await record_for(fake, record_id))["chunks_sent"] == record["chunks_sent"]


@pytest.mark.anyio
async def test_client_disconnect_during_a_slow_non_stream_is_cancelled(fake: Fake) -> None:
    body = chat_body("[tokens:50] [token-ms:100]")
    async with fake.client(timeout=0.2) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.post(CHAT, json=body)
    (record,) = [r for r in await records(fake) if r["body"] == body][-1:]
    assert (await wait_for_status(fake, record["id"], "cancelled"))["chunks_sent"] == 0


# --- fail_rate ------------------------------------------------------------------------------


async def statuses(fake: Fake, count: int) -> list[int]:
    async with fake.client() as client:
        return [
            (await client.post(CHAT, json=chat_body(f"q{i}"))).status_code for i in range(count)
        ]


@pytest.mark.anyio
async def test_fail_rate_is_seeded_and_reproducible(
    start_fake: Callable[[FakeOpenAIConfig], Fake],
) -> None:
    config = FakeOpenAIConfig(tokens=1, fail_rate=0.5, seed=7)
    first = await statuses(start_fake(config), 20)
    second = await statuses(start_fake(config), 20)
    draws = random.Random(7)
    expected = [500 if draws.random() < 0.5 else 200 for _ in range(20)]
    assert first == second == expected
    assert 200 in first
    assert 500 in first
    always = await statuses(start_fake(FakeOpenAIConfig(tokens=1, fail_rate=1.0)), 3)
    assert always == [500, 500, 500]


# --- models and moderations -----------------------------------------------------------------


@pytest.mark.anyio
async def test_models_are_listed_in_openais_format(fake: Fake) -> None:
    async with fake.client() as client:
        listing = await client.get("/v1/models")
        one = await client.get("/v1/models/gpt-4o")
        missing = await client.get("/v1/models/gpt-2")
    assert listing.status_code == 200
    data = listing.json()
    assert data["object"] == "list"
    assert [m["id"] for m in data["data"]] == ["gpt-4o-mini", "gpt-4o", "gpt-4.1-mini"]
    assert all(m["object"] == "model" and m["owned_by"] == "system" for m in data["data"])
    assert all(isinstance(m["created"], int) for m in data["data"])
    assert one.json() == data["data"][1]
    assert missing.status_code == 404


@pytest.mark.anyio
async def test_moderation_flags_the_word_flagged(fake: Fake) -> None:
    inputs = ["all good", "this is FLAGGED.", "flagged", "UNFLAGGEDX"]
    async with fake.client() as client:
        response = await client.post("/v1/moderations", json={"input": inputs})
        single = await client.post("/v1/moderations", json={"input": "FLAGGED"})
    assert response.status_code == 200
    data = response.json()
    assert data["id"].startswith("modr-")
    assert data["model"] == "omni-moderation-latest"
    assert [r["flagged"] for r in data["results"]] == [False, True, False, False]
    flagged = data["results"][1]
    assert flagged["categories"]["harassment"] is True
    assert sum(flagged["categories"].values()) == 1
    assert set(flagged["category_scores"]) == set(flagged["categories"])
    assert set(flagged["category_applied_input_types"]) == set(flagged["categories"])
    assert len(flagged["categories"]) == 13
    assert single.json()["results"][0]["flagged"] is True


@pytest.mark.anyio
async def test_moderation_errors(fake: Fake) -> None:
    async with fake.client() as client:
        missing = await client.post("/v1/moderations", json={"model": "x"})
        failing = await client.post("/v1/moderations", json={"input": "[fail:503]"})
    async with fake.client(headers={}) as client:
        unauthorized = await client.post("/v1/moderations", json={"input": "x"})
    assert missing.status_code == 400
    assert missing.json()["error"]["param"] == "input"
    assert failing.status_code == 503
    assert unauthorized.status_code == 401


# --- the request log ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_requests_are_recorded_for_inspection(fake: Fake) -> None:
    body = chat_body("record me", stream=True)
    before = time.time()
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    async with fake.client() as client:
        client.headers["traceparent"] = traceparent
        events = await stream_chat(client, body)
        del client.headers["traceparent"]
        await client.post("/v1/moderations", json={"input": "FLAGGED"})
    record_id = json.loads(events[0])["id"]
    log = await records(fake)
    chat, moderation = log[-2:]
    assert chat == {
        "id": record_id,
        "path": CHAT,
        "authorization": f"Bearer {KEY}",
        "traceparent": traceparent,
        "body": body,
        "stream": True,
        "status": "completed",
        "status_code": 200,
        "chunks_sent": 8,
        "started_at": chat["started_at"],
        "ended_at": chat["ended_at"],
    }
    assert before <= chat["started_at"] <= chat["ended_at"] <= time.time()
    assert moderation["path"] == "/v1/moderations"
    assert moderation["status"] == "completed"
    assert moderation["stream"] is False
    assert moderation["traceparent"] is None


@pytest.mark.anyio
async def test_failed_requests_are_recorded_and_delete_clears(
    start_fake: Callable[[FakeOpenAIConfig], Fake],
) -> None:
    fake = start_fake(FakeOpenAIConfig(tokens=1))
    async with fake.client(headers={"Authorization": "Bearer nope"}) as client:
        await client.post(CHAT, content=b"{oops")
    async with fake.client() as client:
        await client.post(CHAT, json=chat_body("[fail:500]"))
        await client.get("/v1/models")
        log = await records(fake)
        assert [(r["status"], r["status_code"]) for r in log] == [("failed", 401), ("failed", 500)]
        assert log[0]["authorization"] == "Bearer nope"
        assert log[0]["body"] is None
        cleared = await client.delete("/_fake/requests")
        assert cleared.json() == {"cleared": 2}
        assert await records(fake) == []


@pytest.mark.anyio
async def test_record_limit_keeps_the_newest(
    start_fake: Callable[[FakeOpenAIConfig], Fake],
) -> None:
    fake = start_fake(FakeOpenAIConfig(tokens=1, record_limit=3))
    async with fake.client() as client:
        ids = [(await client.post(CHAT, json=chat_body(f"n{i}"))).json()["id"] for i in range(5)]
    assert [r["id"] for r in await records(fake)] == ids[-3:]


# --- the official SDK -----------------------------------------------------------------------


@pytest.mark.anyio
async def test_sdk_parses_streams_with_usage(fake: Fake) -> None:
    async with fake.sdk() as client:
        stream = await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Hello there"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text.split()) == 8
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 8
    assert chunks[-1].usage.prompt_tokens_details is not None
    assert all(c.usage is None for c in chunks[:-1])


@pytest.mark.anyio
async def test_sdk_parses_completions_models_and_moderations(fake: Fake) -> None:
    async with fake.sdk() as client:
        completion = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Hello there"}], max_tokens=2
        )
        models = [model.id async for model in client.models.list()]
        moderation = await client.moderations.create(input=["ok", "FLAGGED"])
    assert completion.object == "chat.completion"
    assert completion.choices[0].finish_reason == "length"
    assert completion.choices[0].message.refusal is None
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 2
    assert completion.system_fingerprint == SYSTEM_FINGERPRINT
    assert models == ["gpt-4o-mini", "gpt-4o", "gpt-4.1-mini"]
    assert [r.flagged for r in moderation.results] == [False, True]
    assert moderation.results[1].categories.harassment is True


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("content", "api_key", "error", "status"),
    [
        ("hi", "wrong", openai.AuthenticationError, 401),
        ("[fail:401]", KEY, openai.AuthenticationError, 401),
        ("[fail:429]", KEY, openai.RateLimitError, 429),
        ("[fail:500]", KEY, openai.InternalServerError, 500),
        ("[fail:503]", KEY, openai.InternalServerError, 503),
        ("[fail:403]", KEY, openai.PermissionDeniedError, 403),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_sdk_raises_the_right_exceptions(
    fake: Fake, content: str, api_key: str, error: type[openai.APIStatusError], status: int,
    stream: bool,
) -> None:  # fmt: skip
    async with fake.sdk(api_key) as client:
        with pytest.raises(error) as raised:
            await client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": content}], stream=stream
            )
    assert raised.value.status_code == status
    assert isinstance(raised.value.body, dict)
    assert "message" in raised.value.body


@pytest.mark.anyio
async def test_sdk_bad_request_and_not_found(fake: Fake) -> None:
    async with fake.sdk() as client:
        with pytest.raises(openai.BadRequestError) as bad:
            await client.chat.completions.create(model=MODEL, messages=[])
        with pytest.raises(openai.NotFoundError):
            await client.chat.completions.create(
                model="gpt-9", messages=[{"role": "user", "content": "x"}]
            )
    assert bad.value.code == "empty_array"


@pytest.mark.anyio
async def test_sdk_sees_a_dropped_stream_as_a_connection_error(fake: Fake) -> None:
    received: list[str] = []
    async with fake.sdk() as client:
        stream = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "[die-after:2]"}], stream=True
        )

        async def read_all() -> None:
            async for chunk in stream:
                received.append(chunk.choices[0].delta.content or "")

        with pytest.raises(openai.APIConnectionError):
            await read_all()
    assert len(received) == 1 + 2


# --- serve() --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def served_port() -> Iterator[int]:
    port = free_port()
    code = (
        "from gateway.fakes.openai_server import FakeOpenAIConfig, serve\n"
        f"serve(FakeOpenAIConfig(tokens=3, models=('m1',)), port={port})\n"
    )
    process = subprocess.Popen([sys.executable, "-c", code], cwd=REPO)
    try:
        yield port
    finally:
        process.terminate()
        process.wait(5)


@pytest.mark.anyio
async def test_serve_runs_a_real_server(served_port: int) -> None:
    fake = Fake(f"http://127.0.0.1:{served_port}")
    async with fake.client() as client:
        for _ in range(250):
            try:
                health = await client.get("/_fake/health")
                break
            except httpx.TransportError:
                await anyio.sleep(0.02)
        else:
            raise AssertionError("serve() never answered")
        response = await client.post(CHAT, json={**chat_body(), "model": "m1"})
    assert health.json() == {"status": "ok"}
    assert response.json()["usage"]["completion_tokens"] == 3


# --- pure helpers ---------------------------------------------------------------------------


def test_parse_directives_reads_every_directive() -> None:
    text = "a [tokens:3] [token-ms:2.5] [first-token-ms:10] [die-after:1] [hang] [xss] [fail:503]"
    assert parse_directives(text) == Directives(
        fail_status=503,
        die_after=1,
        hang=True,
        xss=True,
        tokens=3,
        token_ms=2.5,
        first_token_ms=10.0,
    )
    assert parse_directives("[tokens:1.5] [fail:999] [nope] [hang ]") == Directives()


@pytest.mark.parametrize("length", [1, 3, 8, 12, 15, 16, 40, 200])
def test_mask_key_never_reveals_the_key(length: int) -> None:
    key = ("sk-" + "abcdefghij" * 20)[:length]
    masked = mask_key(key)
    assert key not in masked
    assert "***" in masked


def test_config_rejects_impossible_values() -> None:
    for bad in ({"fail_rate": 1.5}, {"tokens": -1}, {"token_ms": -1.0}, {"record_limit": -1}):
        with pytest.raises(ValueError, match="must be"):
            FakeOpenAIConfig(**bad)
