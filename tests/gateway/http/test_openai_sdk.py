"""The official ``openai`` SDK against the gateway's /v1 routes, with a client token as key."""

from __future__ import annotations

import secrets

import openai
import pytest

from tests.gateway.http.conftest import (
    FAST_FAKE_TOKENS,
    MODEL,
    SDK,
    AppHandle,
    Apps,
    Fake,
)

pytestmark = pytest.mark.anyio


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


async def test_non_streamed_completion(sdk: SDK, apps: Apps, fake: Fake) -> None:
    app = await apps.add(system_prompt="Be kind.")
    nonce = f"sdk-{secrets.token_hex(6)}"
    completion = await sdk(app.token).chat.completions.create(
        model=MODEL, messages=user(f"Hello {nonce}")
    )
    assert completion.object == "chat.completion"
    assert completion.model == MODEL
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert len(choice.message.content.split()) == FAST_FAKE_TOKENS
    assert completion.usage is not None
    assert completion.usage.completion_tokens == FAST_FAKE_TOKENS
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )
    record = await fake.request_with(nonce)
    assert record["authorization"] == f"Bearer {app.provider_key}"
    assert record["body"]["messages"][0] == {"role": "system", "content": "Be kind."}


async def test_streamed_completion_matches_the_non_streamed_one(sdk: SDK, apps: Apps) -> None:
    app = await apps.add()
    client = sdk(app.token)
    messages = user(f"Stream it {secrets.token_hex(4)}")
    whole = await client.chat.completions.create(model=MODEL, messages=messages)
    stream = await client.chat.completions.create(model=MODEL, messages=messages, stream=True)
    parts: list[str] = []
    finish: list[str] = []
    async for chunk in stream:
        assert chunk.object == "chat.completion.chunk"
        assert chunk.usage is None  # not asked for
        for choice in chunk.choices:
            parts.append(choice.delta.content or "")
            if choice.finish_reason:
                finish.append(choice.finish_reason)
    assert "".join(parts) == whole.choices[0].message.content
    assert finish == ["stop"]


async def test_include_usage_gives_the_usage_chunk(sdk: SDK, apps: Apps) -> None:
    app = await apps.add()
    stream = await sdk(app.token).chat.completions.create(
        model=MODEL,
        messages=user("Count tokens [tokens:5]"),
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    usage = chunks[-1].usage
    assert usage is not None and chunks[-1].choices == []
    assert usage.completion_tokens == 5
    assert usage.prompt_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert all(chunk.usage is None for chunk in chunks[:-1])


async def test_models_list_shows_the_apps_allowed_models(sdk: SDK, apps: Apps) -> None:
    app = await apps.add(allow_models=("gpt-4o",))
    models = [model.id async for model in sdk(app.token).models.list()]
    assert sorted(models) == sorted([MODEL, "gpt-4o"])


async def test_a_bad_token_raises_authentication_error(sdk: SDK, apps: Apps) -> None:
    app: AppHandle = await apps.add()
    for key in ("orc_" + "z" * 43, "sk-not-an-orchestra-token", app.provider_key):
        client = sdk(key)
        with pytest.raises(openai.AuthenticationError) as raised:
            await client.chat.completions.create(model=MODEL, messages=user("hi"))
        assert raised.value.status_code == 401
        assert raised.value.code == "invalid_token"
        with pytest.raises(openai.AuthenticationError):
            await client.models.list()


async def test_a_disallowed_model_raises_bad_request(sdk: SDK, apps: Apps) -> None:
    app = await apps.add()
    for stream in (False, True):
        with pytest.raises(openai.BadRequestError) as raised:
            await sdk(app.token).chat.completions.create(
                model="gpt-4o", messages=user("hi"), stream=stream
            )
        assert raised.value.status_code == 400
        assert raised.value.code == "model_not_allowed"


@pytest.mark.parametrize(
    "message",
    [
        {},
        {"role": "wizard", "content": "hi"},
        {"role": {}, "content": "hi"},
        {"role": "user", "content": 42},
        "hi",
    ],
    ids=["no-role", "unknown-role", "role-object", "content-number", "not-an-object"],
)
async def test_a_message_openai_would_refuse_is_422_not_an_upstream_error(
    sdk: SDK, apps: Apps, message: object
) -> None:
    """Found by tests/gateway/http/test_openapi_fuzz.py: OpenAI's 400 came back as a 502."""
    app = await apps.add()
    with pytest.raises(openai.UnprocessableEntityError) as raised:
        await sdk(app.token).chat.completions.create(
            model=MODEL,
            messages=[message],  # type: ignore[list-item]
        )
    assert raised.value.code == "invalid_request"
    assert raised.value.type == "invalid_request_error"


async def test_an_upstream_failure_raises_a_502_status_error(sdk: SDK, apps: Apps) -> None:
    app = await apps.add()
    for stream in (False, True):
        with pytest.raises(openai.APIStatusError) as raised:
            await sdk(app.token).chat.completions.create(
                model=MODEL, messages=user("Break [fail:500]"), stream=stream
            )
        assert raised.value.status_code == 502
        assert raised.value.code == "upstream_error"
        assert "Traceback" not in raised.value.response.text


async def test_an_upstream_death_mid_stream_raises_in_the_iteration(sdk: SDK, apps: Apps) -> None:
    app = await apps.add()
    stream = await sdk(app.token).chat.completions.create(
        model=MODEL, messages=user("Die [die-after:2] [tokens:6]"), stream=True
    )
    seen: list[str] = []
    with pytest.raises(openai.APIError, match="upstream"):
        async for chunk in stream:
            seen.extend(choice.delta.content or "" for choice in chunk.choices)
    assert len([part for part in seen if part]) == 2
