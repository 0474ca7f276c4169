"""``/v1/responses`` with the official ``openai`` SDK against the real gateway and fake."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import openai
import pytest

from gateway.fakes.response_events import EventEncoder, ResponseShape
from tests.gateway.http.conftest import (
    FAST_FAKE_TOKENS,
    MODEL,
    SDK,
    Apps,
    Fake,
    Gateway,
    assert_no_traceback,
    poll,
    sse_events,
    wait_for_records,
)
from tests.gateway.http.test_user_quotas import mint

pytestmark = pytest.mark.anyio

#: The fake's events of a one-message answer, in order (gateway/fakes/response_events.py).
_SHAPE = ResponseShape(id="resp_x", created_at=0, model=MODEL, item_id="msg_x", request={})
_ENCODER = EventEncoder(_SHAPE)
OPENING = [b.split(b"\n")[0].removeprefix(b"event: ").decode() for b in _ENCODER.opening()]
CLOSING = [b.split(b"\n")[0].removeprefix(b"event: ").decode() for b in _ENCODER.closing("")]


def nonce(label: str) -> str:
    return f"{label}-{secrets.token_hex(5)}"


async def record_of(client: httpx.AsyncClient, request_id: str) -> dict[str, Any]:
    records = await wait_for_records(client, [request_id])
    mine = [r for r in records if r["request_id"] == request_id]
    assert len(mine) == 1, mine
    return mine[0]


async def test_a_streamed_response_passes_openais_events_through_one_by_one(
    sdk: SDK, apps: Apps, fake: Fake, client: httpx.AsyncClient
) -> None:
    app = await apps.add(system_prompt="Be brief.")
    marker = nonce("stream")
    events = []
    async with sdk(app.token).responses.with_streaming_response.create(
        model=MODEL, input=f"Hello {marker}", stream=True
    ) as raw:
        request_id = raw.headers["x-request-id"]
        async for event in await raw.parse():
            events.append(event)
    kinds = [e.type for e in events]
    assert kinds == [*OPENING, *["response.output_text.delta"] * FAST_FAKE_TOKENS, *CLOSING]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    final = events[-1].response
    assert final.status == "completed" and final.output_text == text
    assert final.usage is not None and final.usage.output_tokens == FAST_FAKE_TOKENS
    # The upstream got the app's key, the system prompt first, and the gateway's bound.
    sent = await fake.request_with(marker)
    assert sent["path"] == "/v1/responses"
    assert sent["authorization"] == f"Bearer {app.provider_key}"
    assert sent["body"]["input"][0] == {"role": "system", "content": "Be brief."}
    assert sent["body"]["input"][1] == {"role": "user", "content": f"Hello {marker}"}
    assert sent["body"]["stream"] is True
    # One record, named by its route, with the upstream's usage.
    record = await record_of(client, request_id)
    assert record["route"] == "/v1/responses"
    assert record["outcome"] == "completed"
    assert record["prompt_tokens"] == final.usage.input_tokens
    assert record["completion_tokens"] == FAST_FAKE_TOKENS


async def test_the_sse_framing_is_openais_named_events(
    apps: Apps, client: httpx.AsyncClient
) -> None:
    app = await apps.add()
    body = {"model": MODEL, "input": "frame it [tokens:2]", "stream": True}
    async with client.stream("POST", "/v1/responses", json=body, headers=app.auth) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        blocks = [b async for b in sse_events(r)]
    events = [b for b in blocks if not b.is_comment]
    assert [e.name for e in events] == [*OPENING, *["response.output_text.delta"] * 2, *CLOSING]
    for event in events:
        assert event.json["type"] == event.name  # the data repeats the event's name


async def test_a_non_streamed_response_and_its_retrieval_and_deletion(
    sdk: SDK, apps: Apps, client: httpx.AsyncClient
) -> None:
    app = await apps.add()
    owner = sdk(app.token)
    raw = await owner.responses.with_raw_response.create(
        model=MODEL, input=nonce("whole"), max_output_tokens=16
    )
    created = raw.parse()
    assert created.status == "completed" and created.id.startswith("resp_")
    assert len(created.output_text.split()) == FAST_FAKE_TOKENS
    record = await record_of(client, raw.headers["x-request-id"])
    assert record["route"] == "/v1/responses"
    assert created.usage is not None
    assert record["prompt_tokens"] == created.usage.input_tokens
    assert record["completion_tokens"] == created.usage.output_tokens
    retrieved = await owner.responses.retrieve(created.id)
    assert retrieved.id == created.id and retrieved.output_text == created.output_text
    # Another app (even on the same provider key) does not see it, nor can it delete it.
    other = sdk((await apps.add(provider_key=app.provider_key)).token)
    with pytest.raises(openai.NotFoundError):
        await other.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        await other.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):  # nor chain a conversation on it
        await other.responses.create(model=MODEL, input="go on", previous_response_id=created.id)
    assert (await owner.responses.retrieve(created.id)).id == created.id
    await owner.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        await owner.responses.retrieve(created.id)


async def test_a_users_response_is_not_another_users_nor_the_apps(
    sdk: SDK, apps: Apps, client: httpx.AsyncClient
) -> None:
    app = await apps.add()
    alice = (await mint(client, app, "alice"))["Authorization"].removeprefix("Bearer ")
    bob = (await mint(client, app, "bob"))["Authorization"].removeprefix("Bearer ")
    created = await sdk(alice).responses.create(model=MODEL, input=nonce("users"))
    assert (await sdk(alice).responses.retrieve(created.id)).id == created.id
    for stranger in (bob, app.token):
        with pytest.raises(openai.NotFoundError):
            await sdk(stranger).responses.retrieve(created.id)
    # A streamed response is owned too, from its first event on.
    stream = await sdk(alice).responses.create(model=MODEL, input=nonce("s"), stream=True)
    streamed_id = None
    async for event in stream:
        if event.type == "response.created":
            streamed_id = event.response.id
            assert (await sdk(alice).responses.retrieve(streamed_id)).id == streamed_id
    assert streamed_id is not None
    with pytest.raises(openai.NotFoundError):
        await sdk(bob).responses.retrieve(streamed_id)


async def test_retrieval_of_an_unknown_or_malformed_id_is_404_and_recorded(
    apps: Apps, client: httpx.AsyncClient
) -> None:
    app = await apps.add()
    for response_id in ("resp_0123456789abcdef", "not-an-id"):
        response = await client.get(f"/v1/responses/{response_id}", headers=app.auth)
        assert response.status_code == 404, response.text
        error = response.json()["error"]
        assert error["code"] == "not_found" and error["type"] == "not_found_error"
        record = await record_of(client, response.headers["x-request-id"])
        assert record["route"] == "/v1/responses/{id}"
        assert record["http_status"] == 404


async def test_the_quota_settles_on_the_upstreams_usage(
    sdk: SDK, apps: Apps, client: httpx.AsyncClient, gateway: Gateway
) -> None:
    app = await apps.add()
    await gateway.cli("quotas", "set", app.name, "--tokens-per-day", "1000000")
    alice = await mint(client, app, "alice")  # /status shows what is left to a user's token
    created = await sdk(alice["Authorization"].removeprefix("Bearer ")).responses.create(
        model=MODEL, input=nonce("quota")
    )
    assert created.usage is not None
    spent = created.usage.input_tokens + created.usage.output_tokens

    async def remaining() -> int:
        status = (await client.get("/status", headers=alice)).json()
        value: int = status["app"]["quota"]["remaining"]["tokens_per_day"]["remaining"]
        return value

    assert await poll(remaining, lambda left: left == 1_000_000 - spent)


async def test_errors_map_like_chat_completions(
    sdk: SDK, apps: Apps, client: httpx.AsyncClient
) -> None:
    app = await apps.add()
    responses = sdk(app.token).responses
    with pytest.raises(openai.BadRequestError) as refused:
        await responses.create(model="gpt-4o", input="not allowed")
    assert refused.value.code == "model_not_allowed"
    with pytest.raises(openai.InternalServerError) as failed:
        await responses.create(model=MODEL, input="boom [fail:500]")
    assert failed.value.status_code == 502 and failed.value.code == "upstream_error"
    with pytest.raises(openai.UnprocessableEntityError):
        await responses.create(model=MODEL, input="tiny", max_output_tokens=1)
    # After the start a failure is OpenAI's error event, and the record says so.
    events = []
    async with responses.with_streaming_response.create(
        model=MODEL, input="die [die-after:2]", stream=True
    ) as raw:
        request_id = raw.headers["x-request-id"]
        async for event in await raw.parse():
            events.append(event)
    assert [e.type for e in events[-3:]] == ["response.output_text.delta"] * 2 + ["error"]
    assert events[-1].code == "upstream_error"
    assert events[-1].sequence_number == len(events) - 1
    assert_no_traceback(events[-1].message)
    record = await record_of(client, request_id)
    assert record["outcome"] == "upstream_error" and record["route"] == "/v1/responses"


async def test_leaving_mid_stream_cancels_the_upstream_and_is_recorded(
    apps: Apps, gateway: Gateway, fake: Fake, client: httpx.AsyncClient
) -> None:
    app = await apps.add()
    marker = nonce("leave")
    body = {"model": MODEL, "input": f"{marker} [tokens:400] [token-ms:20]", "stream": True}
    seen = 0
    async with (
        gateway.client() as own,
        own.stream("POST", "/v1/responses", json=body, headers=app.auth) as r,
    ):
        request_id = r.headers["x-request-id"]
        async for event in sse_events(r):
            seen += event.name == "response.output_text.delta"
            if seen == 3:
                break

    async def upstream() -> dict[str, Any]:
        return await fake.request_with(marker)

    cancelled = await poll(upstream, lambda rec: rec["status"] != "in_progress")
    assert cancelled["status"] == "cancelled" and cancelled["chunks_sent"] < 100, cancelled
    record = await record_of(client, request_id)
    assert record["outcome"] == "client_disconnected", record
    assert record["route"] == "/v1/responses"
    assert 3 <= record["completion_tokens"] <= cancelled["chunks_sent"]


async def test_the_hard_cap_stops_a_response_at_its_reservation(
    apps: Apps, gateway: Gateway, client: httpx.AsyncClient
) -> None:
    app = await apps.add(max_output_tokens=20)
    await gateway.cli("quotas", "set", app.name, "--tokens-per-day", "1000000", "--hard-cap")
    body = {"model": MODEL, "input": "[tokens:60] [ignore-max-tokens]", "stream": True}
    async with client.stream("POST", "/v1/responses", json=body, headers=app.auth) as r:
        request_id = r.headers["x-request-id"]
        events = [e for e in [b async for b in sse_events(r)] if not e.is_comment]
    deltas = [e for e in events if e.name == "response.output_text.delta"]
    assert 0 < len(deltas) <= 20
    assert events[-1].name == "error" and events[-1].json["code"] == "quota_exceeded"
    record = await record_of(client, request_id)
    assert record["outcome"] == "quota_stopped" and record["completion_tokens"] == len(deltas)
