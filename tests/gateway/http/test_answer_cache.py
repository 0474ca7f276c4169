"""The per-app answer cache on the session gateway (one process: the memory store).

Each test registers its own apps with a cache TTL, so no test sees another's entries. Whether
the cache answered is proven on the fake's side (how many requests it received) as well as
by the ``X-Orchestra-Cache`` header, the records (``cached``) and the metrics.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

import httpx
import pytest

from gateway.services import apps as app_service
from gateway.services import quotas as quota_service
from gateway.services.views import QuotaLimits
from tests.gateway.http.conftest import (
    ADMIN_TOKEN,
    MODEL,
    SDK,
    AppHandle,
    Apps,
    Fake,
    Gateway,
    ask_stream,
    wait_for_records,
)

pytestmark = pytest.mark.anyio

CACHE = "x-orchestra-cache"


async def cached_app(
    apps: Apps, gateway: Gateway, *, ttl_s: int = 600, nondeterministic: bool = False, **kw: Any
) -> AppHandle:
    """A new app whose cache is on (set before its first request: no stale auth cache)."""
    app = await apps.add(**kw)
    changes = app_service.AppChanges(cache_ttl_s=ttl_s, cache_nondeterministic=nondeterministic)
    await gateway.with_database(lambda db: app_service.update_app(db, app.name, changes))
    return app


def chat(marker: str, **fields: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": marker}], **fields}


async def post_chat(
    client: httpx.AsyncClient, app: AppHandle, body: dict[str, Any], **headers: str
) -> httpx.Response:
    response = await client.post("/v1/chat/completions", json=body, headers={**app.auth, **headers})
    assert response.status_code == 200, response.text
    return response


def text_of(response: httpx.Response) -> str:
    content: str = response.json()["choices"][0]["message"]["content"]
    return content


async def test_an_identical_request_is_answered_from_the_cache(
    client: httpx.AsyncClient, apps: Apps, gateway: Gateway, fake: Fake
) -> None:
    app = await cached_app(apps, gateway)
    marker = f"cache-json-{secrets.token_hex(4)}"
    first = await post_chat(client, app, chat(marker))
    second = await post_chat(client, app, chat(marker))
    assert (first.headers[CACHE], second.headers[CACHE]) == ("miss", "hit")
    assert text_of(second) == text_of(first)
    counts = ("prompt_tokens", "completion_tokens", "total_tokens")
    assert [second.json()["usage"][k] for k in counts] == [first.json()["usage"][k] for k in counts]
    assert len(await fake.requests_with(marker)) == 1
    ids = [r.headers["x-request-id"] for r in (first, second)]
    records = {r["request_id"]: r for r in await wait_for_records(client, ids, app=app.name)}
    miss, hit = records[ids[0]], records[ids[1]]
    assert (miss["cached"], hit["cached"]) == (False, True)
    assert hit["outcome"] == "completed"
    assert (hit["prompt_tokens"], hit["completion_tokens"]) == (0, 0)
    assert miss["completion_tokens"] > 0


async def test_a_streamed_request_gets_the_cached_answer_as_a_stream(
    sdk: SDK, apps: Apps, gateway: Gateway, fake: Fake
) -> None:
    app = await cached_app(apps, gateway)
    client = sdk(app.token)
    marker = f"cache-stream-{secrets.token_hex(4)}"
    messages = [{"role": "user", "content": marker}]

    async def streamed() -> tuple[str, str, list[str | None]]:
        raw = await client.chat.completions.with_raw_response.create(
            model=MODEL, messages=messages, stream=True, stream_options={"include_usage": True}
        )
        stream = raw.parse()
        text, finishes = "", []
        async for chunk in stream:
            for choice in chunk.choices:
                text += choice.delta.content or ""
                finishes.append(choice.finish_reason)
        return raw.headers[CACHE], text, [f for f in finishes if f]

    first = await streamed()
    second = await streamed()
    assert (first[0], second[0]) == ("miss", "hit")
    assert second[1:] == first[1:] == (first[1], ["stop"])
    assert first[1]
    # The same entry answers the JSON form of the request too.
    whole = await client.chat.completions.with_raw_response.create(model=MODEL, messages=messages)
    assert whole.headers[CACHE] == "hit"
    assert whole.parse().choices[0].message.content == first[1]
    assert len(await fake.requests_with(marker)) == 1


async def test_two_apps_sending_the_same_prompt_never_share_an_answer(
    client: httpx.AsyncClient, apps: Apps, gateway: Gateway, fake: Fake
) -> None:
    one, other = await cached_app(apps, gateway), await cached_app(apps, gateway)
    marker = f"cache-apps-{secrets.token_hex(4)}"
    seen = [(await post_chat(client, app, chat(marker))).headers[CACHE] for app in (one, other)]
    assert seen == ["miss", "miss"]
    received = await fake.requests_with(marker)
    assert sorted(r["authorization"] for r in received) == sorted(
        f"Bearer {app.provider_key}" for app in (one, other)
    )
    again = [(await post_chat(client, app, chat(marker))).headers[CACHE] for app in (one, other)]
    assert again == ["hit", "hit"]
    assert len(await fake.requests_with(marker)) == 2


async def test_what_shapes_the_answer_is_part_of_the_key(
    client: httpx.AsyncClient, apps: Apps, gateway: Gateway, fake: Fake
) -> None:
    app = await cached_app(apps, gateway)
    marker = f"cache-key-{secrets.token_hex(4)}"
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    variants = [
        chat(marker),
        chat(marker, max_tokens=7),
        chat(marker, temperature=0),
        chat(marker, tools=[tool]),
        chat(marker, top_p=0.5),
    ]
    assert [(await post_chat(client, app, v)).headers[CACHE] for v in variants] == ["miss"] * 5
    assert [(await post_chat(client, app, v)).headers[CACHE] for v in variants] == ["hit"] * 5
    assert len(await fake.requests_with(marker)) == 5


async def test_no_cache_temperature_and_no_store_bypass_the_cache(
    client: httpx.AsyncClient, apps: Apps, gateway: Gateway, fake: Fake
) -> None:
    app = await cached_app(apps, gateway)
    marker = f"cache-bypass-{secrets.token_hex(4)}"
    assert (await post_chat(client, app, chat(marker))).headers[CACHE] == "miss"
    fresh = await post_chat(client, app, chat(marker), **{"Cache-Control": "no-cache"})
    warm = await post_chat(client, app, chat(marker, temperature=0.8))
    warm_again = await post_chat(client, app, chat(marker, temperature=0.8))
    assert [r.headers[CACHE] for r in (fresh, warm, warm_again)] == ["miss"] * 3
    unstored = chat(f"{marker}-no-store")
    for _ in range(2):
        response = await post_chat(client, app, unstored, **{"Cache-Control": "no-store"})
        assert response.headers[CACHE] == "miss"
    assert len(await fake.requests_with(marker)) == 6
    # The no-cache answer replaced the entry: the next plain request is answered with it.
    assert text_of(await post_chat(client, app, chat(marker))) == text_of(fresh)


async def test_nondeterministic_apps_cache_warm_requests_too(
    client: httpx.AsyncClient, apps: Apps, gateway: Gateway, fake: Fake
) -> None:
    app = await cached_app(apps, gateway, nondeterministic=True)
    body = chat(f"cache-warm-{secrets.token_hex(4)}", temperature=0.8)
    seen = [(await post_chat(client, app, body)).headers[CACHE] for _ in range(2)]
    assert seen == ["miss", "hit"]


async def test_an_app_without_a_cache_says_nothing_and_always_asks_upstream(
    client: httpx.AsyncClient, apps: Apps, fake: Fake
) -> None:
    app = await apps.add()
    marker = f"cache-off-{secrets.token_hex(4)}"
    for _ in range(2):
        assert CACHE not in (await post_chat(client, app, chat(marker))).headers
    assert len(await fake.requests_with(marker)) == 2


async def test_ask_is_cached_as_json_and_as_a_stream(
    client: httpx.AsyncClient, apps: Apps, gateway: Gateway, fake: Fake
) -> None:
    app = await cached_app(apps, gateway, system_prompt="Answer briefly.")
    marker = f"cache-ask-{secrets.token_hex(4)}"
    first = await ask_stream(client, app, {"prompt": marker})
    assert first.response.headers[CACHE] == "miss"
    second = await ask_stream(client, app, {"prompt": marker})
    assert second.response.headers[CACHE] == "hit"
    assert second.names == ["delta", "done"]
    assert second.text == first.text
    done = second.events[-1].json
    assert done["request_id"] == second.response.headers["x-request-id"]
    assert done["usage"] == first.events[-1].json["usage"]
    as_json = await client.post("/ask", json={"prompt": marker, "stream": False}, headers=app.auth)
    assert as_json.status_code == 200, as_json.text
    assert as_json.headers[CACHE] == "hit"
    assert as_json.json()["text"] == first.text
    assert len(await fake.requests_with(marker)) == 1


async def test_a_hit_counts_toward_rpm_but_costs_no_tokens(
    client: httpx.AsyncClient, apps: Apps, gateway: Gateway
) -> None:
    app = await cached_app(apps, gateway)
    quota = QuotaLimits(rpm=3)
    await gateway.with_database(
        lambda db: quota_service.set_quota(db, app_name=app.name, changes=quota)
    )
    body = chat(f"cache-rpm-{secrets.token_hex(4)}")
    seen = [(await post_chat(client, app, body)).headers[CACHE] for _ in range(3)]
    assert seen == ["miss", "hit", "hit"]
    refused = await client.post("/v1/chat/completions", json=body, headers=app.auth)
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "quota_exceeded"


async def test_cache_metrics_count_hits_and_misses_per_app(
    client: httpx.AsyncClient, apps: Apps, gateway: Gateway
) -> None:
    app = await cached_app(apps, gateway)
    body = chat(f"cache-metrics-{secrets.token_hex(4)}")
    for _ in range(3):
        await post_chat(client, app, body)
    metrics = await client.get("/metrics", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    text = metrics.text

    def value(name: str) -> float:
        found = re.search(rf'^{name}\{{app="{app.name}"\}} (\S+)$', text, re.MULTILINE)
        assert found is not None, name
        return float(found.group(1))

    assert (value("orchestra_cache_misses_total"), value("orchestra_cache_hits_total")) == (1, 2)
    assert "orchestra_cache_evictions_total" in text
