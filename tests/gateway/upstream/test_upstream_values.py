"""What an upstream's chunks and answers may carry, checked at the boundary (parse_chunk,
parse_completion): types and ranges, so the gateway never sees a negative count, a 10**30 usage,
an object where a model name belongs or a number where text belongs."""

from __future__ import annotations

import json

import pytest

from gateway.core.errors import UpstreamError
from gateway.upstream.chat import parse_chunk, parse_completion
from gateway.upstream.openai import OpenAIUpstream
from gateway.upstream.types import MAX_TOKEN_COUNT, ChatRequest, Usage, token_count, usage_from
from tests.gateway.upstream.raw_server import answer, raw_server

pytestmark = pytest.mark.anyio


def chunk(**fields: object) -> bytes:
    body: dict[str, object] = {"id": "c", "object": "chat.completion.chunk", "model": "m"}
    body.update(fields)
    return json.dumps(body).encode()


def content(value: object, **fields: object) -> bytes:
    return chunk(
        choices=[{"index": 0, "delta": {"content": value}, "finish_reason": None}], **fields
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, 0),
        (0, 0),
        (12, 12),
        (12.0, 12),
        (3_000_000_000, 3_000_000_000),
        (10**30, MAX_TOKEN_COUNT),
        (1e300, MAX_TOKEN_COUNT),
        (-1, None),
        (-0.5, None),
        (1.5, None),
        (float("nan"), None),
        (True, None),
        ("12", None),
        ([1], None),
        ({"n": 1}, None),
    ],
)
def test_a_token_count_is_a_non_negative_integer_clamped_to_the_columns(
    value: object, expected: int | None
) -> None:
    assert token_count(value) == expected


def test_usage_with_any_invalid_count_is_unreported() -> None:
    assert usage_from({"prompt_tokens": 3, "completion_tokens": 4}) == Usage(3, 4)
    assert usage_from({"prompt_tokens": 10**30, "completion_tokens": 4}) == Usage(
        MAX_TOKEN_COUNT, 4
    )
    assert usage_from({"prompt_tokens": 3}) == Usage(3, 0)
    for bad in (-5, "5", True, [5], {"a": 5}):
        assert usage_from({"prompt_tokens": 3, "completion_tokens": bad}) is None, bad
    for not_usage in (None, 5, "usage", [1, 2]):
        assert usage_from(not_usage) is None


@pytest.mark.parametrize(
    "usage",
    [
        {"prompt_tokens": 10**30, "completion_tokens": 5},
        {"prompt_tokens": -7, "completion_tokens": 5},
        {"prompt_tokens": "7", "completion_tokens": None},
        {"prompt_tokens": {"a": 1}, "completion_tokens": [1]},
        "lots",
    ],
    ids=["huge", "negative", "string", "objects", "not-an-object"],
)
def test_a_usage_only_chunk_never_carries_an_invalid_count(usage: object) -> None:
    parsed = parse_chunk(chunk(choices=[], usage=usage))
    assert parsed.usage_only, "still the usage chunk (a /v1 client that did not ask skips it)"
    if parsed.usage is not None:
        assert 0 <= parsed.usage.prompt_tokens <= MAX_TOKEN_COUNT
        assert 0 <= parsed.usage.completion_tokens <= MAX_TOKEN_COUNT


@pytest.mark.parametrize("model", [{"name": "gpt"}, ["gpt"], 42, True])
def test_a_model_that_is_not_a_string_is_ignored(model: object) -> None:
    parsed = parse_chunk(content("hi", model=model))
    assert parsed.model is None
    assert parsed.text == "hi"


def test_a_long_model_name_or_finish_reason_is_cut() -> None:
    parsed = parse_chunk(
        chunk(model="m" * 5000, choices=[{"delta": {}, "finish_reason": "x" * 5000}])
    )
    assert parsed.model == "m" * 200
    assert parsed.finish_reason is not None and len(parsed.finish_reason) == 40
    odd = parse_chunk(chunk(choices=[{"delta": {}, "finish_reason": {"why": 1}}]))
    assert odd.finish_reason is None


@pytest.mark.parametrize("value", [12345, 1.5, {"text": "hi"}, ["hi"], True])
def test_content_that_is_not_text_is_a_malformed_event(value: object) -> None:
    with pytest.raises(UpstreamError) as raised:
        parse_chunk(content(value))
    assert type(raised.value) is UpstreamError
    assert "content is not text" in raised.value.message


def test_null_content_and_a_missing_delta_are_empty_text() -> None:
    assert parse_chunk(content(None)).text == ""
    assert parse_chunk(chunk(choices=[{"finish_reason": "stop"}])).text == ""


@pytest.mark.parametrize(
    "payload",
    [
        chunk(choices={"0": {}}),
        chunk(choices=["text"]),
        chunk(choices=[{"delta": "text"}]),
        b"[1, 2]",
        b"12",
    ],
    ids=["choices-object", "choice-string", "delta-string", "array", "number"],
)
def test_wrong_types_in_the_structure_are_a_typed_error(payload: bytes) -> None:
    with pytest.raises(UpstreamError):
        parse_chunk(payload)


def test_wrong_types_everywhere_but_content_are_ignored_not_fatal() -> None:
    parsed = parse_chunk(
        chunk(
            model=[1],
            usage={"prompt_tokens": "x", "completion_tokens": -1},
            choices=[{"index": "zero", "delta": {"content": "ok", "role": 5}, "finish_reason": 7}],
        )
    )
    assert (parsed.text, parsed.model, parsed.finish_reason, parsed.usage) == (
        "ok",
        None,
        None,
        None,
    )


def _completion(**fields: object) -> dict[str, object]:
    body: dict[str, object] = {
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1},
    }
    body.update(fields)
    return body


def test_a_whole_answer_is_checked_like_a_chunk() -> None:
    good = parse_completion(_completion(), "gpt-4o-mini")
    assert (good.text, good.model, good.usage) == ("hi", "gpt-4o-mini-2024-07-18", Usage(3, 1))
    odd = parse_completion(
        _completion(model={"x": 1}, usage={"prompt_tokens": 10**30, "completion_tokens": -1}),
        "gpt-4o-mini",
    )
    assert odd.model == "gpt-4o-mini", "the requested model stands in"
    assert odd.usage == Usage()
    huge = parse_completion(_completion(usage={"prompt_tokens": 10**30}), "gpt-4o-mini")
    assert huge.usage == Usage(MAX_TOKEN_COUNT, 0)
    for value in (12345, {"t": 1}):
        bad = _completion(choices=[{"message": {"content": value}}])
        with pytest.raises(UpstreamError):
            parse_completion(bad, "gpt-4o-mini")


async def test_complete_over_the_wire_clamps_a_huge_usage() -> None:
    body = _completion(usage={"prompt_tokens": 10**30, "completion_tokens": 2})
    async with raw_server(answer(200, body)) as server:
        upstream = OpenAIUpstream(connect_timeout=1, first_token_timeout=2)
        try:
            completion = await upstream.complete(
                ChatRequest(
                    base_url=server.base_url,
                    api_key="sk-test",
                    model="gpt-4o-mini",
                    messages=[{"role": "user", "content": "hi"}],
                )
            )
        finally:
            await upstream.aclose()
    assert completion.usage == Usage(MAX_TOKEN_COUNT, 2)


def test_the_raw_answer_says_what_was_counted_and_always_encodes() -> None:
    plain = _completion()
    assert parse_completion(plain, "gpt-4o-mini").raw is plain, "a sane answer is kept as sent"
    huge = parse_completion(
        _completion(model=7, usage={"prompt_tokens": 10**30, "completion_tokens": 1}), "m"
    )
    assert huge.raw["model"] == "m"
    assert huge.raw["usage"] == {
        "prompt_tokens": MAX_TOKEN_COUNT,
        "completion_tokens": 1,
        "total_tokens": MAX_TOKEN_COUNT + 1,
    }
