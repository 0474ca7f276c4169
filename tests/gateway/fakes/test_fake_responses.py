"""The fake's Responses API and embeddings, over HTTP (httpx for the wire, the SDK for types)."""

from __future__ import annotations

import base64
import json
import math
import re
import struct
from collections.abc import Iterator

import pytest

from gateway.fakes.openai_server import FakeOpenAIConfig
from tests.gateway.fakes.harness import MODEL, Fake, running_fake

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def fake() -> Iterator[Fake]:
    with running_fake(FakeOpenAIConfig(tokens=4)) as running:
        yield running


async def test_the_stream_is_openais_named_events_in_order(fake: Fake) -> None:
    body = {"model": MODEL, "input": "Hi", "stream": True}
    async with fake.client() as http:
        response = await http.post("/v1/responses", json=body)
    assert response.headers["content-type"].startswith("text/event-stream")
    text = response.text
    assert re.fullmatch(r"(event: [a-z_.]+\ndata: [^\n]+\n\n)+", text), text[:300]
    blocks = [b.split("\n") for b in text.split("\n\n") if b]
    names = [lines[0].removeprefix("event: ") for lines in blocks]
    data = [json.loads(lines[1].removeprefix("data: ")) for lines in blocks]
    assert names[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert names[4:8] == ["response.output_text.delta"] * 4
    assert names[8:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [d["type"] for d in data] == names
    assert [d["sequence_number"] for d in data] == list(range(len(data)))
    final = data[-1]["response"]
    text_out = "".join(d["delta"] for d in data if d["type"] == "response.output_text.delta")
    assert final["output"][0]["content"][0]["text"] == text_out == data[8]["text"]
    usage = final["usage"]
    assert usage["output_tokens"] == 4
    assert usage["total_tokens"] == usage["input_tokens"] + 4


async def test_max_output_tokens_makes_an_incomplete_response(fake: Fake) -> None:
    async with fake.sdk() as sdk:
        created = await sdk.responses.create(
            model=MODEL, input="long [tokens:40]", max_output_tokens=16
        )
    assert created.status == "incomplete"
    assert created.incomplete_details is not None
    assert created.incomplete_details.reason == "max_output_tokens"
    assert created.usage is not None and created.usage.output_tokens == 16


async def test_stored_responses_are_retrieved_and_deleted_and_unstored_ones_not(
    fake: Fake,
) -> None:
    async with fake.sdk() as sdk, fake.client() as http:
        created = await sdk.responses.create(model=MODEL, input="keep me")
        assert (await sdk.responses.retrieve(created.id)).output_text == created.output_text
        deleted = await http.delete(f"/v1/responses/{created.id}")
        assert deleted.json() == {"id": created.id, "object": "response", "deleted": True}
        assert (await http.get(f"/v1/responses/{created.id}")).status_code == 404
        unstored = await sdk.responses.create(model=MODEL, input="forget me", store=False)
        assert (await http.get(f"/v1/responses/{unstored.id}")).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"model": MODEL},
        {"input": "x"},
        {"model": MODEL, "input": []},
        {"model": "nope", "input": "x"},
    ],
)
async def test_bad_responses_requests_are_refused(fake: Fake, body: dict[str, object]) -> None:
    async with fake.client() as http:
        response = await http.post("/v1/responses", json=body)
    assert response.status_code in (400, 404), response.text
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


async def test_embeddings_are_deterministic_unit_vectors_in_both_encodings(fake: Fake) -> None:
    body = {"model": "text-embedding-3-small", "input": ["one", "two"], "dimensions": 16}
    async with fake.client() as http:
        floats = (await http.post("/v1/embeddings", json=body)).json()
        again = (await http.post("/v1/embeddings", json=body)).json()
        packed = (
            await http.post("/v1/embeddings", json={**body, "encoding_format": "base64"})
        ).json()
    assert floats == again
    assert floats["object"] == "list" and floats["usage"] == {"prompt_tokens": 2, "total_tokens": 2}
    first, second = (d["embedding"] for d in floats["data"])
    assert len(first) == 16 and first != second
    assert math.isclose(math.fsum(v * v for v in first), 1.0, rel_tol=1e-5)
    decoded = struct.unpack("<16f", base64.b64decode(packed["data"][0]["embedding"]))
    assert list(decoded) == first


async def test_embeddings_refuse_unknown_models_and_bad_input(fake: Fake) -> None:
    async with fake.client() as http:
        unknown = await http.post("/v1/embeddings", json={"model": MODEL, "input": "x"})
        empty = await http.post(
            "/v1/embeddings", json={"model": "text-embedding-3-small", "input": []}
        )
    assert unknown.status_code == 404
    assert empty.status_code == 400
