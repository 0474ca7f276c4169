"""The fault suite, one upstream failure at a time: the client always ends with `done` or a
typed error, the interaction record says what happened, and the quota is settled.

Each app has a quota (max_concurrent 1, a TPM holding one reservation): the follow-up request
of ``assert_reservation_released`` is admitted only if the failed request's reservation was
released. Upstreams: the OpenAI fake (``[die-after:N]``, ``[hang]``, ``[token-ms:MS]``) and raw
servers for what the fake cannot do (no headers at all, invalid JSON chunks).
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import httpx
import pytest

from tests.gateway.http.conftest import Fake, poll
from tests.gateway.resilience.conftest import (
    CIRCUIT_COOLDOWN_S,
    FIRST_TOKEN_TIMEOUT_S,
    IDLE_TIMEOUT_S,
    Tenants,
    app_records,
    assert_reservation_released,
    call,
    circuits,
    quota_limits,
    record_of,
)
from tests.gateway.upstream.raw_server import (
    FOLLOWUP_PROMPT,
    answer,
    chunk_json,
    fault_then_fine,
    raw_server,
    silent,
    sse,
)

pytestmark = pytest.mark.anyio

#: Slack over a configured timeout for a loaded machine (the bound itself is ~1 s).
SLACK_S = 1.0


def tag() -> str:
    return f"f-{secrets.token_hex(5)}"


async def fake_record(fake: Fake, marker: str, status: str) -> dict[str, Any]:
    """The fake's record of the request with ``marker``, once it reached ``status``."""
    found = await poll(
        lambda: fake.requests_with(marker),
        lambda rs: len(rs) == 1 and rs[0]["status"] == status,
    )
    return found[0]


async def openai_stream(
    client: httpx.AsyncClient, token: str, body: dict[str, Any]
) -> tuple[int, list[str]]:
    """POST a streamed /v1/chat/completions; the ``data:`` payloads, in order."""
    headers = {"Authorization": f"Bearer {token}"}
    async with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as r:
        text = (await r.aread()).decode()
    blocks = [b for b in text.split("\n\n") if b and not b.startswith(":")]
    assert all(b.startswith("data: ") for b in blocks), blocks
    return r.status_code, [b.removeprefix("data: ") for b in blocks]


# --- killed mid-stream ----------------------------------------------------------------------


async def test_upstream_killed_mid_stream_ends_with_an_error_event(
    client: httpx.AsyncClient, tenants: Tenants, fake: Fake
) -> None:
    app = await tenants.add(quota=quota_limits())
    marker = tag()
    ended = await call(client, app, {"prompt": f"{marker} [die-after:3]"})
    assert ended.assert_typed_end() == "error:upstream_error"
    assert ended.names == ["delta", "delta", "delta", "error"]
    record = await record_of(client, app, ended.request_id)
    assert (record["outcome"], record["error_code"], record["http_status"]) == (
        "upstream_error",
        "upstream_error",
        502,
    )
    assert record["completion_tokens"] == 3  # what was streamed is what is counted
    assert (await fake_record(fake, marker, "failed"))["chunks_sent"] == 3
    await assert_reservation_released(client, app)


async def test_upstream_killed_mid_stream_on_v1_ends_with_an_openai_error_chunk(
    client: httpx.AsyncClient, tenants: Tenants
) -> None:
    app = await tenants.add(quota=quota_limits())
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "[die-after:2]"}],
        "stream": True,
    }
    status, payloads = await openai_stream(client, app.token, body)
    assert status == 200
    assert "[DONE]" not in payloads, "a cut answer must not look complete"
    last = json.loads(payloads[-1])
    assert last["error"]["code"] == "upstream_error", last
    contents = [
        c["delta"].get("content")
        for p in payloads[:-1]
        for c in json.loads(p).get("choices", [])
        if c["delta"].get("content")
    ]
    assert len(contents) == 2
    await assert_reservation_released(client, app)


# --- hung before the first byte -------------------------------------------------------------


async def test_headers_then_silence_is_a_504_within_the_first_token_bound(
    client: httpx.AsyncClient, tenants: Tenants, fake: Fake
) -> None:
    app = await tenants.add(quota=quota_limits())
    marker = tag()
    ended = await call(client, app, {"prompt": f"{marker} [hang]"})
    assert ended.assert_typed_end() == "http:504:upstream_timeout"
    assert FIRST_TOKEN_TIMEOUT_S - 0.05 <= ended.elapsed < FIRST_TOKEN_TIMEOUT_S + SLACK_S
    # Not retried, and the connection was closed (nothing more is paid for).
    await fake_record(fake, marker, "cancelled")
    assert len(await fake.requests_with(marker)) == 1
    record = await record_of(client, app, ended.request_id)
    assert (record["outcome"], record["error_code"], record["http_status"]) == (
        "upstream_error",
        "upstream_timeout",
        504,
    )
    await assert_reservation_released(client, app)


@pytest.mark.parametrize("stream", [True, False], ids=["sse", "json"])
async def test_no_headers_at_all_is_a_504_within_the_bound(
    client: httpx.AsyncClient, tenants: Tenants, stream: bool
) -> None:
    async with raw_server(fault_then_fine(silent)) as server:
        app = await tenants.add(base_url=server.base_url, quota=quota_limits())
        ended = await call(client, app, {"prompt": "hello?", "stream": stream})
        assert ended.assert_typed_end() == "http:504:upstream_timeout"
        assert ended.elapsed < FIRST_TOKEN_TIMEOUT_S + SLACK_S
        assert len(server.requests) == 1, "a timeout is not retried"
        record = await record_of(client, app, ended.request_id)
        assert record["error_code"] == "upstream_timeout"
        await assert_reservation_released(client, app)


# --- hung between chunks --------------------------------------------------------------------


async def test_silence_between_chunks_ends_with_an_error_event_within_the_idle_bound(
    client: httpx.AsyncClient, tenants: Tenants, fake: Fake
) -> None:
    app = await tenants.add(quota=quota_limits())
    marker = tag()
    ended = await call(client, app, {"prompt": f"{marker} [tokens:3] [token-ms:20000]"})
    assert ended.assert_typed_end() == "error:upstream_timeout"
    assert ended.names == ["delta", "error"]
    first, error = ended.deltas[0], ended.last
    waited = error.at - first.at
    assert IDLE_TIMEOUT_S - 0.05 <= waited < IDLE_TIMEOUT_S + SLACK_S, waited
    assert any(e.is_comment for e in ended.events), "pings keep the connection alive meanwhile"
    await fake_record(fake, marker, "cancelled")  # the gateway hung up on the upstream
    record = await record_of(client, app, ended.request_id)
    assert (record["outcome"], record["error_code"]) == ("upstream_error", "upstream_timeout")
    assert record["completion_tokens"] == 1
    await assert_reservation_released(client, app)


# --- garbage --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "garbage",
    ["{not json", '{"choices": "nope"}', "[1, 2]", "null"],
    ids=["invalid-json", "choices-not-a-list", "array", "null"],
)
async def test_a_garbage_chunk_mid_stream_ends_with_a_typed_error_event(
    client: httpx.AsyncClient, tenants: Tenants, garbage: str
) -> None:
    handler = sse([chunk_json(), chunk_json("fine "), garbage, chunk_json("never ")])
    async with raw_server(fault_then_fine(handler)) as server:
        app = await tenants.add(base_url=server.base_url, quota=quota_limits())
        ended = await call(client, app, {"prompt": "hi"})
        assert ended.assert_typed_end() == "error:upstream_error", (ended.names, ended.cut)
        assert [e.json["text"] for e in ended.deltas] == ["fine "]
        record = await record_of(client, app, ended.request_id)
        assert (record["outcome"], record["error_code"], record["http_status"]) == (
            "upstream_error",
            "upstream_error",
            502,
        )
        assert record["completion_tokens"] == 1
        await assert_reservation_released(client, app)


async def test_a_garbage_first_chunk_is_a_clean_502(
    client: httpx.AsyncClient, tenants: Tenants
) -> None:
    async with raw_server(fault_then_fine(sse(["{not json"]))) as server:
        app = await tenants.add(base_url=server.base_url, quota=quota_limits())
        started = time.perf_counter()
        ended = await call(client, app, {"prompt": "hi"})
        assert ended.assert_typed_end() == "http:502:upstream_error"
        assert "malformed" in ended.body["error"]["message"]
        assert time.perf_counter() - started < 5
        record = await record_of(client, app, ended.request_id)
        assert (record["outcome"], record["error_code"]) == ("upstream_error", "upstream_error")
        await assert_reservation_released(client, app)


@pytest.mark.parametrize(
    "body",
    [{"choices": ["text"]}, {"choices": [{"message": "text"}]}, {"choices": []}],
    ids=["choice-not-an-object", "message-not-an-object", "no-choice"],
)
async def test_a_malformed_whole_answer_is_a_clean_502(
    client: httpx.AsyncClient, tenants: Tenants, body: object
) -> None:
    malformed = answer(200, body)
    fine = answer(
        200,
        {
            "model": "gpt-4o-mini",
            "choices": [{"message": {"content": "fine"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 1},
        },
    )
    async with raw_server(fault_then_fine(malformed, fine=fine)) as server:
        app = await tenants.add(base_url=server.base_url, quota=quota_limits())
        ended = await call(client, app, {"prompt": "hi", "stream": False})
        problems = []
        if (ended.status, (ended.body or {}).get("error", {}).get("code")) != (
            502,
            "upstream_error",
        ):
            problems.append(f"answered {ended.status} {ended.body}")
        try:
            records = await poll(
                lambda: app_records(client, app),
                lambda rs: any(r["request_id"] == ended.request_id for r in rs),
                timeout=3,
            )
        except AssertionError:
            records = []
        mine = [r for r in records if r["request_id"] == ended.request_id]
        if [(r["outcome"], r["error_code"]) for r in mine] != [
            ("upstream_error", "upstream_error")
        ]:
            problems.append(f"records: {mine}")
        # A malformed 200 is retried like a 5xx (three of them open the circuit): wait for
        # the cool-down, then the follow-up is the probe.
        await poll(
            lambda: circuits(client),
            lambda c: c.get(server.base_url, "closed") in ("closed", "half_open"),
            timeout=CIRCUIT_COOLDOWN_S + 3,
        )
        followup = await call(client, app, {"prompt": FOLLOWUP_PROMPT, "stream": False})
        if followup.status != 200:
            problems.append(
                f"reservation not released: follow-up {followup.status} {followup.body}"
            )
        assert not problems, problems
