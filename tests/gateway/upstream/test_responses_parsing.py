"""The Responses API's and embeddings' answers, checked at the boundary (hostile values)."""

from __future__ import annotations

import json

import pytest

from gateway.core.errors import UpstreamError
from gateway.upstream.responses import parse_embeddings, parse_event, parse_response
from gateway.upstream.types import MAX_TOKEN_COUNT, Usage


def event(**data: object) -> bytes:
    return json.dumps(data).encode()


def test_a_text_delta_is_its_text_and_raw_json_is_kept() -> None:
    payload = event(type="response.output_text.delta", delta="hi ", sequence_number=3)
    parsed = parse_event(payload)
    assert (parsed.event, parsed.text, parsed.raw) == (
        "response.output_text.delta",
        "hi ",
        payload.decode(),
    )


def test_the_terminal_event_carries_the_usage_model_and_status() -> None:
    response = {"model": "gpt-4o-mini-2024", "status": "incomplete"}
    response["usage"] = {"input_tokens": 7, "output_tokens": 2 * MAX_TOKEN_COUNT}
    parsed = parse_event(event(type="response.incomplete", response=response))
    assert parsed.usage == Usage(prompt_tokens=7, completion_tokens=MAX_TOKEN_COUNT)
    assert parsed.model == "gpt-4o-mini-2024" and parsed.finish_reason == "incomplete"
    # A usage that is not counts is unreported (the gateway counts itself), never trusted.
    response["usage"] = {"input_tokens": -1, "output_tokens": "3"}
    assert parse_event(event(type="response.completed", response=response)).usage is None


@pytest.mark.parametrize(
    "payload",
    [
        b"[1]",
        b"not json",
        event(delta="x"),  # no type
        event(type="a\nb"),  # would break the SSE framing
        event(type="a\rb"),
        event(type="x" * 101),
        event(type="response.output_text.delta", delta=42),
        event(type="response.created", response="nope"),
    ],
)
def test_malformed_events_are_upstream_errors(payload: bytes) -> None:
    with pytest.raises(UpstreamError):
        parse_event(payload)


def test_a_response_objects_text_is_its_output_text_parts() -> None:
    data = {
        "id": "resp_1",
        "model": "m" * 500,
        "status": "completed",
        "output": [
            {"type": "reasoning", "summary": []},
            {
                "type": "message",
                "content": [{"type": "output_text", "text": "a"}, {"type": "refusal"}],
            },
            {"type": "message", "content": [{"type": "output_text", "text": "b"}]},
        ],
        "usage": {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5},
    }
    parsed = parse_response(data, "asked")
    assert parsed.text == "ab" and len(parsed.model) == 200
    assert parsed.usage == Usage(3, 2)
    for broken in (
        {"output": []},
        {**data, "output": "x"},
        {**data, "output": [{"type": "message", "content": [{"type": "output_text", "text": 1}]}]},
    ):
        with pytest.raises(UpstreamError):
            parse_response(broken, "asked")


def test_embeddings_are_vectors_of_numbers_or_base64() -> None:
    good = {"data": [{"embedding": [0.5, 1]}, {"embedding": "AAAA"}], "usage": {"prompt_tokens": 4}}
    parsed = parse_embeddings(good, "text-embedding-3-small")
    assert parsed.usage == Usage(prompt_tokens=4) and parsed.model == "text-embedding-3-small"
    for bad in (
        {"data": "x"},
        {"data": [{"embedding": ["1"]}]},
        {"data": [{"embedding": None}]},
        [],
    ):
        with pytest.raises(UpstreamError):
            parse_embeddings(bad, "m")
    assert parse_embeddings({"data": [], "usage": {"prompt_tokens": 1.5}}, "m").usage == Usage()
