"""The same answer is metered the same, streamed or not, on /ask or /v1, on any replica."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import pytest

from gateway.fakes.prompt import count_prompt_tokens
from gateway.services.views import QuotaLimits
from tests.gateway.replicas.conftest import MODEL, AppHandle, Cluster, Spread, ask, records_of

pytestmark = pytest.mark.anyio


async def v1_chat(
    client: httpx.AsyncClient, app: AppHandle, prompt: str, *, stream: bool, usage: bool
) -> httpx.Response:
    body: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": prompt}],
        "stream": stream,
        "max_tokens": 100,
    }
    if stream and usage:
        body["stream_options"] = {"include_usage": True}
    response = await client.post("/v1/chat/completions", json=body, headers=app.auth)
    assert response.status_code == 200, response.text
    return response


async def test_streamed_and_non_streamed_answers_are_metered_identically(
    cluster: Cluster, spread: Spread
) -> None:
    # Every limit is on, so every request goes through reserve and settle.
    quota = QuotaLimits(
        rpm=1000, tpm=1_000_000, tokens_per_day=10_000_000, max_concurrent=50, budget_usd_month=100
    )
    app = await cluster.add_app("metering", quota)
    prompt = f"meter {secrets.token_hex(3)}: tell me about quotas [tokens:17]"
    ids = []
    for stream in (True, False, True, False):  # four replicas' turns: all three serve
        outcome = await ask(spread.next(), app, prompt, stream=stream, max_tokens=100)
        assert outcome.status == 200, outcome
        assert outcome.headers["RateLimit-Limit"].isdigit(), outcome.headers
        ids.append(outcome.request_id)
    for stream, usage in ((True, True), (True, False), (False, False)):
        response = await v1_chat(spread.next(), app, prompt, stream=stream, usage=usage)
        ids.append(response.headers["x-request-id"])
        # OpenAI's headers on /v1, next to the IETF ones.
        assert response.headers["x-ratelimit-limit-requests"] == "1000"
        assert response.headers["x-ratelimit-limit-tokens"] == "1000000"
        assert int(response.headers["x-ratelimit-remaining-tokens"]) < 1_000_000
        assert response.headers["RateLimit-Limit"].isdigit()
    records = await records_of(spread.clients[0], app, len(ids))
    by_id = {r["request_id"]: r for r in records}
    metered = {
        (by_id[i]["route"], by_id[i]["prompt_tokens"], by_id[i]["completion_tokens"]) for i in ids
    }
    usages = {(prompt_tokens, completion) for _, prompt_tokens, completion in metered}
    assert len(usages) == 1, sorted(metered)
    ((prompt_tokens, completion),) = usages
    # What the upstream billed: its prompt count and the 17 tokens it sent.
    assert (prompt_tokens, completion) == (
        count_prompt_tokens([{"role": "user", "content": prompt}]),
        17,
    )
    assert all(by_id[i]["outcome"] == "completed" for i in ids)
