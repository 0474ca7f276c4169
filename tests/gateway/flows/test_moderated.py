"""The moderated workflow: moderation first; a flagged prompt never reaches the chat model."""

from __future__ import annotations

import secrets

import httpx
import pytest

from gateway.core.errors import ContentFlagged, UpstreamRateLimited
from gateway.flows.moderated import moderation_input
from gateway.upstream.openai import OpenAIUpstream
from tests.gateway.flows.conftest import (
    InProcess,
    add_app,
    chat_requests,
    last_chat_request,
    moderation_requests,
)
from tests.gateway.flows.doubles import assistant, system, user
from tests.gateway.http.conftest import (
    FAST_FAKE_TOKENS,
    Apps,
    Fake,
    ask_stream,
    assert_error,
    poll,
    wait_for_records,
)

pytestmark = pytest.mark.anyio


def marker() -> str:
    return f"mod-{secrets.token_hex(5)}"


# --- in process ----------------------------------------------------------------------------


def test_the_callers_messages_are_moderated_not_the_instructions() -> None:
    assert moderation_input([user("a"), assistant("b"), user("c")]) == "a\nb\nc"


async def test_a_flagged_prompt_stops_before_the_answer_node(in_process: InProcess) -> None:
    with pytest.raises(ContentFlagged):
        await in_process.answer("moderated", system("rules"), user("this is FLAGGED"))
    assert in_process.moderator.texts == ["this is FLAGGED"]
    assert in_process.upstream.requests == []


async def test_a_clean_prompt_is_moderated_then_answered(in_process: InProcess) -> None:
    texts = await in_process.answer("moderated", system("rules"), user("fine"))
    assert "".join(texts) == "one two three "
    assert in_process.moderator.texts == ["fine"]
    assert [r.messages for r in in_process.upstream.requests] == [[system("rules"), user("fine")]]


async def test_the_moderated_workflow_keeps_no_thread(in_process: InProcess) -> None:
    await in_process.answer("moderated", user("one"), conversation_id="c1")
    await in_process.answer("moderated", user("two"), conversation_id="c1")
    assert in_process.upstream.requests[1].messages == [user("two")]


# --- the upstream's moderate(), against the fake --------------------------------------------


async def test_moderate_asks_the_moderations_endpoint(fake: Fake) -> None:
    upstream = OpenAIUpstream(connect_timeout=2, first_token_timeout=5)
    try:
        clean, flagged = marker(), marker()
        assert await upstream.moderate(fake.base_url, "sk-test-mod", f"hello {clean}") is False
        assert await upstream.moderate(fake.base_url, "sk-test-mod", f"FLAGGED {flagged}") is True
        with pytest.raises(UpstreamRateLimited):
            await upstream.moderate(fake.base_url, "sk-test-mod", "[fail:429]")
    finally:
        await upstream.aclose()
    (received,) = await moderation_requests(fake, clean)
    assert received["body"] == {"input": f"hello {clean}"}
    assert received["authorization"] == "Bearer sk-test-mod"


# --- over real sockets ---------------------------------------------------------------------


async def test_a_flagged_prompt_never_reaches_the_chat_model(
    client: httpx.AsyncClient, apps: Apps, fake: Fake
) -> None:
    app = await add_app(apps, "moderated")
    prompt = f"Something FLAGGED {marker()}"
    streamed = await ask_stream(client, app, {"prompt": prompt})
    # The stream is one error event, and nothing else.
    assert streamed.names == ["error"], streamed.names
    error = streamed.events[0].json
    assert error["code"] == "content_flagged"
    assert error["request_id"] == streamed.request_id
    assert error["message"]
    # The fake saw the moderation request, and no chat request at all.
    (moderation,) = await poll(lambda: moderation_requests(fake, prompt), bool)
    assert moderation["body"]["input"] == prompt
    assert await chat_requests(fake, prompt) == []


async def test_a_flagged_prompt_is_a_400_json_error_when_json_was_asked_for(
    client: httpx.AsyncClient, apps: Apps, fake: Fake
) -> None:
    app = await add_app(apps, "moderated")
    prompt = f"Also FLAGGED {marker()}"
    response = await client.post("/ask", json={"prompt": prompt, "stream": False}, headers=app.auth)
    assert_error(response, 400, "content_flagged")
    assert len(await moderation_requests(fake, prompt)) == 1
    assert await chat_requests(fake, prompt) == []


async def test_a_clean_prompt_is_answered_and_both_are_recorded(
    client: httpx.AsyncClient, apps: Apps, fake: Fake
) -> None:
    app = await add_app(apps, "moderated", system_prompt="Be kind.")
    clean = f"A fine question {marker()}"
    streamed = await ask_stream(client, app, {"prompt": clean})
    assert streamed.names == ["delta"] * FAST_FAKE_TOKENS + ["done"]
    assert len(await moderation_requests(fake, clean)) == 1
    chat = await last_chat_request(fake, clean)
    assert chat["body"]["messages"] == [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": clean},
    ]
    flagged = await ask_stream(client, app, {"prompt": f"FLAGGED {marker()}"})

    records = await wait_for_records(client, [streamed.request_id, flagged.request_id])
    by_id = {r["request_id"]: r for r in records}
    answered, refused = by_id[streamed.request_id], by_id[flagged.request_id]
    assert answered["workflow"] == refused["workflow"] == "moderated"
    assert answered["outcome"] == "completed"
    assert answered["completion_tokens"] == FAST_FAKE_TOKENS
    assert (refused["outcome"], refused["error_code"]) == ("rejected", "content_flagged")
    assert (refused["prompt_tokens"], refused["completion_tokens"]) == (0, 0)
