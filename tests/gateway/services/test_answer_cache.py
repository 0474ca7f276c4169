"""Which requests the answer cache takes part in, and what its key holds (pure rules)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from gateway.core.errors import ModelNotAllowed
from gateway.services.answer_cache import (
    AnswerCapture,
    CachedAnswer,
    keepable,
    plan_for,
)
from gateway.services.ask import AskInput, Delta, Done
from gateway.services.tokens import AppContext
from gateway.upstream.types import Chunk, Completion, Usage

ROUTE = "/v1/chat/completions"
APP = AppContext(
    app_id="app_one",
    app_name="one",
    token_id="tok",
    origins=(),
    model="gpt-4o-mini",
    allowed_models=("gpt-4o-mini", "gpt-4o"),
    base_url="https://api.openai.com/v1",
    system_prompt=None,
    max_output_tokens=256,
    log_content="metadata",
    cache_ttl_s=600,
)


def _input(text: str = "hello", **fields: Any) -> AskInput:
    return AskInput(messages=[{"role": "user", "content": text}], **fields)


def _key(ctx: AppContext = APP, inp: AskInput | None = None, route: str = ROUTE) -> str:
    plan = plan_for(ctx, inp or _input(), route, None)
    assert plan is not None
    return plan.key


def test_the_key_starts_with_the_app_and_differs_between_apps() -> None:
    other = dataclasses.replace(APP, app_id="app_two", app_name="two")
    assert _key().startswith("app_one:")
    assert _key(other).startswith("app_two:")
    assert _key().split(":")[1] != _key(other).split(":")[1]


@pytest.mark.parametrize(
    "changed",
    [
        {"inp": _input("hello!")},
        {"inp": _input(model="gpt-4o")},
        {"inp": _input(max_tokens=10)},
        {"inp": _input(temperature=0)},
        {"inp": _input(extra={"tools": [{"type": "function", "function": {"name": "f"}}]})},
        {"inp": _input(extra={"seed": 7})},
        {"ctx": dataclasses.replace(APP, system_prompt="Be brief.")},
        {"ctx": dataclasses.replace(APP, base_url="https://other.example/v1")},
        {"route": "/ask"},
    ],
)
def test_everything_that_shapes_the_answer_changes_the_key(changed: dict[str, Any]) -> None:
    assert _key(**changed) != _key()


def test_metadata_does_not_change_the_key() -> None:
    assert _key(inp=_input(metadata={"trace": "x"})) == _key()


@pytest.mark.parametrize(
    ("ctx", "inp", "cache_control"),
    [
        (dataclasses.replace(APP, cache_ttl_s=0), _input(), None),
        (dataclasses.replace(APP, workflow="conversation"), _input(), None),
        (APP, _input(conversation_id="c1"), None),
        (APP, _input(temperature=0.7), None),
        (APP, _input(extra={"n": 2}), None),
        (APP, _input(extra={"logprobs": True}), None),
        (APP, _input(), "no-store"),
        (APP, _input(), "private, No-Store"),
    ],
)
def test_requests_the_cache_stays_out_of(
    ctx: AppContext, inp: AskInput, cache_control: str | None
) -> None:
    assert plan_for(ctx, inp, ROUTE, cache_control) is None


def test_no_cache_skips_the_lookup_but_keeps_the_fresh_answer() -> None:
    plan = plan_for(APP, _input(), ROUTE, "max-age=0, no-cache")
    assert plan is not None and not plan.lookup
    assert plan.key == _key()


def test_a_nondeterministic_app_caches_warm_requests() -> None:
    warm = dataclasses.replace(APP, cache_nondeterministic=True)
    assert plan_for(warm, _input(temperature=0.7), ROUTE, None) is not None


def test_a_model_the_app_does_not_allow_is_refused_as_a_call_would_be() -> None:
    with pytest.raises(ModelNotAllowed):
        plan_for(APP, _input(model="o4-mini"), ROUTE, None)


def _chunk(raw: str, text: str = "") -> Delta:
    return Delta(Chunk(raw=raw, text=text))


def test_a_streamed_text_answer_is_kept_and_a_tool_call_is_not() -> None:
    usage = Usage(5, 2)
    capture = AnswerCapture()
    assert capture.see(_chunk("{}", "Hel")) is None
    assert capture.see(_chunk("{}", "lo")) is None
    kept = capture.see(Done("stop", "gpt-4o-mini", usage))
    assert kept == CachedAnswer("Hello", "stop", "gpt-4o-mini", usage)
    assert CachedAnswer.loads(kept.dumps()) == kept
    tools = AnswerCapture()
    tools.see(_chunk('{"choices":[{"delta":{"tool_calls":[{"index":0}]}}]}'))
    assert tools.see(Done("stop", "gpt-4o-mini", usage)) is None
    cut = AnswerCapture()
    cut.see(_chunk("{}", "Hel"))
    assert cut.see(Done("content_filter", "gpt-4o-mini", usage)) is None


def test_a_json_answer_is_kept_only_as_one_plain_choice() -> None:
    def completion(message: dict[str, Any], finish: str = "stop", n: int = 1) -> Completion:
        choice = {"index": 0, "message": message, "finish_reason": finish}
        raw = {"choices": [choice] * n}
        return Completion(raw, message.get("content") or "", finish, "gpt-4o-mini", Usage(3, 1))

    plain = {"role": "assistant", "content": "Hi"}
    assert keepable(completion(plain)) == CachedAnswer("Hi", "stop", "gpt-4o-mini", Usage(3, 1))
    assert keepable(completion(plain, n=2)) is None
    assert keepable(completion(plain, finish="tool_calls")) is None
    assert keepable(completion({**plain, "tool_calls": [{"id": "c"}]})) is None
    assert CachedAnswer.loads(b"not json") is None
