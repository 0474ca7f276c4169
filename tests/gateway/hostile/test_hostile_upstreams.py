"""Hostile upstreams: whatever an upstream sends, the client gets a typed end, the request gets
exactly one record, the quota is settled, and the records of other apps keep flowing.

A typed end is an ``error`` event or a JSON error when the answer itself is broken (content that
is not text, a cut body, silence, bad chunk sizes). When only a value beside the answer is out
of range or of the wrong type (usage, model), the value is clamped or ignored at the boundary
and the answer ends with ``done``, carrying the sane value, never the hostile one; it is never
a broken body. Each app has a quota of one concurrent answer: the follow-up request is admitted
only if the hostile request's reservation was released.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from anyio.abc import SocketStream

from gateway.services.views import QuotaLimits
from gateway.upstream.types import MAX_TOKEN_COUNT
from tests.gateway.hostile.conftest import tenants_on
from tests.gateway.http.conftest import MODEL, Gateway
from tests.gateway.resilience.conftest import (
    Tenants,
    assert_reservation_released,
    call,
    record_of,
)
from tests.gateway.upstream.raw_server import (
    FOLLOWUP_PROMPT,
    Handler,
    RawRequest,
    RawServer,
    answer,
    chunk_json,
    fault_then_fine,
    raw_server,
    sse,
)

pytestmark = pytest.mark.anyio

METADATA = {"case": "hostile", "user": "u-1"}


def usage_chunk(usage: object) -> str:
    return json.dumps(
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "model": MODEL,
            "choices": [],
            "usage": usage,
        }
    )


def answer_with(*extra: str, words: tuple[str, ...] = ("hostile ", "answer ")) -> list[str]:
    return [chunk_json(), *(chunk_json(w) for w in words), chunk_json(finish="stop"), *extra]


def odd_chunk(**fields: Any) -> str:
    body = {"id": "c", "object": "chat.completion.chunk", "model": MODEL, "choices": []}
    body.update(fields)
    return json.dumps(body)


async def bad_chunk_sizes(_: RawRequest, stream: SocketStream) -> None:
    """A chunked body whose second chunk announces a size that is not hexadecimal."""
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
    head += b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    first = f"data: {chunk_json()}\n\ndata: {chunk_json('one ')}\n\n".encode()
    await stream.send(head + f"{len(first):x}\r\n".encode() + first + b"\r\n")
    await stream.send(b"zz-not-a-size\r\n" + b"x" * 64 + b"\r\n0\r\n\r\n")


@dataclass(frozen=True)
class Case:
    handler: Handler
    #: "done" or "error:<code>" or "http:<status>:<code>"
    end: str
    stream: bool = True


CASES: dict[str, Case] = {
    "huge-usage-10e30": Case(
        sse(answer_with(usage_chunk({"prompt_tokens": 10**30, "completion_tokens": 2}))), "done"
    ),
    "negative-usage": Case(
        sse(answer_with(usage_chunk({"prompt_tokens": -50, "completion_tokens": -(10**9)}))),
        "done",
    ),
    "usage-of-wrong-types": Case(
        sse(answer_with(usage_chunk({"prompt_tokens": "12", "completion_tokens": [1]}))), "done"
    ),
    "usage-not-an-object": Case(sse(answer_with(usage_chunk(["lots"]))), "done"),
    "model-an-object": Case(
        sse(
            [
                odd_chunk(model={"name": "x"}, choices=[{"delta": {"content": "a "}}]),
                odd_chunk(model=["y"], usage={"prompt_tokens": 5, "completion_tokens": 1}),
            ]
        ),
        "done",
    ),
    "content-a-number": Case(
        sse([chunk_json(), chunk_json("one "), odd_chunk(choices=[{"delta": {"content": 12345}}])]),
        "error:upstream_error",
    ),
    "wrong-types-everywhere": Case(
        sse(
            [
                chunk_json("one "),
                odd_chunk(
                    model=[1],
                    usage="x",
                    choices=[
                        {
                            "index": "a",
                            "delta": {"content": {"t": 1}, "role": 7},
                            "finish_reason": 5,
                        }
                    ],
                ),
            ]
        ),
        "error:upstream_error",
    ),
    "no-done": Case(sse(answer_with(), end=None), "error:upstream_error"),
    "silent-after-the-first-token": Case(
        sse([chunk_json(), chunk_json("one ")], end=None, then_hang=True),
        "error:upstream_timeout",
    ),
    "bad-chunk-sizes": Case(bad_chunk_sizes, "error:upstream_error"),
    "json-huge-usage": Case(
        answer(
            200,
            {
                "model": MODEL,
                "choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10**30, "completion_tokens": -3},
            },
        ),
        "json",
        stream=False,
    ),
    "json-model-an-object": Case(
        answer(
            200,
            {
                "model": {"x": 1},
                "choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1},
            },
        ),
        "json",
        stream=False,
    ),
    "json-content-a-number": Case(
        answer(200, {"model": MODEL, "choices": [{"message": {"content": 12345}}]}),
        "http:502:upstream_error",
        stream=False,
    ),
}


async def assert_other_apps_records_flow(
    client: httpx.AsyncClient, tenants: Tenants, server: RawServer
) -> None:
    """An app that did nothing wrong is answered and recorded after the hostile request."""
    other = await tenants.add(base_url=server.base_url)
    ended = await call(client, other, {"prompt": FOLLOWUP_PROMPT})
    assert ended.assert_typed_end() == "done"
    await record_of(client, other, ended.request_id)


def assert_sane_counts(record: dict[str, Any]) -> None:
    for key in ("prompt_tokens", "completion_tokens"):
        assert type(record[key]) is int and 0 <= record[key] <= MAX_TOKEN_COUNT, record


@pytest.mark.parametrize("name", list(CASES))
async def test_a_hostile_upstream_ends_typed_recorded_and_settled(
    name: str, sqlite_gateway: Gateway, request: pytest.FixtureRequest
) -> None:
    case = CASES[name]
    tenants = tenants_on(sqlite_gateway, request)
    async with (
        raw_server(fault_then_fine(case.handler)) as server,
        sqlite_gateway.client(timeout=15) as client,
    ):
        app = await tenants.add(
            base_url=server.base_url,
            log_content="full",
            quota=QuotaLimits(max_concurrent=1),
        )
        body = {"prompt": f"hostile {name}", "metadata": METADATA, "stream": case.stream}
        ended = await call(client, app, body)
        assert ended.assert_typed_end() == case.end, (ended.body, ended.events)
        if case.end == "done":
            done = ended.last.json
            assert done["model"] == MODEL, done
            assert 0 <= done["usage"]["prompt_tokens"] <= MAX_TOKEN_COUNT, done
            assert 0 <= done["usage"]["completion_tokens"] <= MAX_TOKEN_COUNT, done
        if case.end == "json":
            assert ended.body["model"] == MODEL, ended.body
            assert ended.body["text"] == "hi", ended.body

        record = await record_of(client, app, ended.request_id)
        assert_sane_counts(record)
        assert record["model"] == MODEL, record
        assert record["metadata"] == METADATA, record
        expected_outcome = "completed" if case.end in ("done", "json") else "upstream_error"
        assert record["outcome"] == expected_outcome, record

        await assert_reservation_released(client, app)
        await assert_other_apps_records_flow(client, tenants, server)


@pytest.mark.parametrize("tokens", [3_000_000_000, 10**30], ids=["3e9", "1e30"])
async def test_usage_past_32_bits_is_recorded_on_each_backend(
    tokens: int, any_gateway: Gateway, request: pytest.FixtureRequest
) -> None:
    """PostgreSQL's INTEGER columns refused 3e9 and the writer then retried that batch forever:
    no later record of any app was written."""
    usage = {"prompt_tokens": tokens, "completion_tokens": tokens}
    tenants = tenants_on(any_gateway, request)
    async with (
        raw_server(fault_then_fine(sse(answer_with(usage_chunk(usage))))) as server,
        any_gateway.client(timeout=15) as client,
    ):
        app = await tenants.add(base_url=server.base_url, quota=QuotaLimits(max_concurrent=1))
        ended = await call(client, app, {"prompt": "big", "metadata": METADATA})
        assert ended.assert_typed_end() == "done"
        expected = min(tokens, MAX_TOKEN_COUNT)
        assert ended.last.json["usage"]["prompt_tokens"] == expected
        record = await record_of(client, app, ended.request_id)
        assert (record["prompt_tokens"], record["completion_tokens"]) == (expected, expected)
        assert record["metadata"] == METADATA
        await assert_reservation_released(client, app)
        await assert_other_apps_records_flow(client, tenants, server)


V1_CASES: dict[str, tuple[Handler, bool, str]] = {
    "huge-usage": (
        answer(
            200,
            {
                "model": MODEL,
                "choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10**30, "completion_tokens": 1},
            },
        ),
        False,
        "json",
    ),
    "streamed-content-a-number": (
        sse([chunk_json(), odd_chunk(choices=[{"delta": {"content": 12345}}])]),
        True,
        "openai-error",
    ),
}


@pytest.mark.parametrize("name", list(V1_CASES))
async def test_a_hostile_upstream_on_the_openai_route(
    name: str, sqlite_gateway: Gateway, request: pytest.FixtureRequest
) -> None:
    """/v1 forwards the upstream's JSON: what it sends back must say what was counted and
    encode, or be a typed error."""
    fault, stream, end = V1_CASES[name]
    tenants = tenants_on(sqlite_gateway, request)
    async with (
        raw_server(fault_then_fine(fault)) as server,
        sqlite_gateway.client(timeout=15) as client,
    ):
        app = await tenants.add(base_url=server.base_url, quota=QuotaLimits(max_concurrent=1))
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": f"hostile {name}"}],
            "stream": stream,
            "metadata": METADATA,
        }
        if stream:
            response = await client.post("/v1/chat/completions", json=body, headers=app.auth)
            assert response.status_code == 200
            blocks = [b for b in response.text.split("\n\n") if b and not b.startswith(":")]
            assert "data: [DONE]" not in blocks, blocks
            assert json.loads(blocks[-1].removeprefix("data: "))["error"]["code"] == (
                "upstream_error"
            )
            request_id = response.headers["x-request-id"]
        else:
            ended = await call(client, app, body, path="/v1/chat/completions")
            assert ended.assert_typed_end() == end, ended.body
            if end == "json":
                assert ended.body["usage"]["prompt_tokens"] == MAX_TOKEN_COUNT, ended.body
            request_id = ended.request_id
        record = await record_of(client, app, request_id)
        assert_sane_counts(record)
        await assert_reservation_released(client, app)
        await assert_other_apps_records_flow(client, tenants, server)


async def test_reported_model_names_never_become_metric_labels(
    sqlite_gateway: Gateway, request: pytest.FixtureRequest
) -> None:
    """Any upstream can report any model name: labelled by it, one hostile upstream could make
    the metrics' cardinality unbounded. The label is the model as the app asked for it."""
    tenants = tenants_on(sqlite_gateway, request)
    reported = [f"made-up-model-{n}" for n in range(3)]

    def answers(name: str) -> Handler:
        chunks = (None, "hi ", "there ")
        last = chunk_json(finish="stop", model=name)
        return sse([*(chunk_json(c, model=name) for c in chunks), last])

    async with sqlite_gateway.client(timeout=15) as client:
        for name in reported:
            async with raw_server(answers(name)) as server:
                app = await tenants.add(base_url=server.base_url)
                ended = await call(client, app, {"prompt": "which model?"})
                assert ended.assert_typed_end() == "done"
                record = await record_of(client, app, ended.request_id)
                assert record["model"] == name, record  # the record keeps what was reported
        metrics = (await client.get("/metrics")).text
    assert f'model="{MODEL}"' in metrics
    for name in reported:
        assert name not in metrics
