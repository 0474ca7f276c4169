"""``/v1/embeddings`` with the official ``openai`` SDK against the real gateway and fake."""

from __future__ import annotations

import secrets

import httpx
import openai
import pytest

from gateway.fakes.embeddings import vector
from tests.gateway.http.conftest import (
    SDK,
    Apps,
    Fake,
    Gateway,
    assert_no_traceback,
    wait_for_records,
)
from tests.gateway.observability.conftest import scrape_until

pytestmark = pytest.mark.anyio

EMBEDDING_MODEL = "text-embedding-3-small"


async def test_float_and_base64_vectors_are_the_upstreams_and_recorded(
    sdk: SDK, apps: Apps, fake: Fake, client: httpx.AsyncClient, gateway: Gateway
) -> None:
    app = await apps.add(
        system_prompt="Never sent with embeddings.", allow_models=(EMBEDDING_MODEL,)
    )
    texts = [f"first {secrets.token_hex(4)}", "second text"]
    embeddings = sdk(app.token).embeddings
    as_floats = await embeddings.create(model=EMBEDDING_MODEL, input=texts, encoding_format="float")
    # The SDK's default asks for base64 and decodes it: the same float32 numbers.
    raw = await embeddings.with_raw_response.create(model=EMBEDDING_MODEL, input=texts)
    decoded = raw.parse()
    for result in (as_floats, decoded):
        assert [d.index for d in result.data] == [0, 1]
        assert result.data[0].embedding == vector(texts[0], 1536)
        assert result.data[1].embedding == vector(texts[1], 1536)
        assert result.usage.prompt_tokens > 0
    sent = await fake.requests_with(texts[0])
    assert [r["body"].get("encoding_format") for r in sent] == ["float", "base64"]
    for received in sent:
        assert received["path"] == "/v1/embeddings"
        assert received["authorization"] == f"Bearer {app.provider_key}"
        assert received["body"]["input"] == texts  # as sent: no system prompt, no messages
    request_id = raw.headers["x-request-id"]
    records = await wait_for_records(client, [request_id])
    record = next(r for r in records if r["request_id"] == request_id)
    assert record["route"] == "/v1/embeddings"
    assert record["outcome"] == "completed"
    assert record["prompt_tokens"] == decoded.usage.prompt_tokens
    assert record["completion_tokens"] == 0
    labels = {"route": "/v1/embeddings", "app": app.name, "outcome": "completed"}
    scraped = await scrape_until(
        gateway, lambda m: m.total("orchestra_requests_total", **labels) == 2
    )
    assert scraped.total("orchestra_tokens_total", app=app.name, kind="prompt") == (
        as_floats.usage.prompt_tokens + decoded.usage.prompt_tokens
    )


async def test_dimensions_and_token_ids_pass_through(sdk: SDK, apps: Apps) -> None:
    app = await apps.add(allow_models=(EMBEDDING_MODEL,))
    result = await sdk(app.token).embeddings.create(
        model=EMBEDDING_MODEL, input=[[1, 2, 3]], dimensions=8, encoding_format="float"
    )
    assert result.data[0].embedding == vector([1, 2, 3], 8)
    assert result.usage.prompt_tokens == 3


async def test_errors_map_like_chat_completions(sdk: SDK, apps: Apps) -> None:
    app = await apps.add()  # embeddings models not allowed
    embeddings = sdk(app.token).embeddings
    with pytest.raises(openai.BadRequestError) as refused:
        await embeddings.create(model=EMBEDDING_MODEL, input="hello")
    assert refused.value.code == "model_not_allowed"
    allowed = sdk((await apps.add(allow_models=(EMBEDDING_MODEL,))).token).embeddings
    with pytest.raises(openai.RateLimitError) as limited:
        await allowed.create(model=EMBEDDING_MODEL, input="slow down [fail:429]")
    assert limited.value.code == "upstream_rate_limited"
    with pytest.raises(openai.UnprocessableEntityError) as malformed:
        await allowed.create(model=EMBEDDING_MODEL, input=[])
    assert_no_traceback(str(malformed.value))
    with pytest.raises(openai.AuthenticationError):
        await sdk("orc_not-a-token").embeddings.create(model=EMBEDDING_MODEL, input="x")
