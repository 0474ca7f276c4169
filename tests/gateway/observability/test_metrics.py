"""GET /metrics against real traffic: every metric moves by exactly what the requests did.

Each test registers an app of its own, so its ``app``-labelled series start at zero; the
unlabelled ones (gateway overhead) and the ``model``-labelled ones (upstream duration) are
compared as deltas, which is exact because the tests of this folder run one at a time and every
request has settled (been counted) before the next scrape is taken.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncGenerator
from typing import cast

import anyio
import httpx
import pytest
from anyio.abc import TaskStatus

from gateway.services import apps as app_service
from tests.gateway.http.conftest import (
    ADMIN_TOKEN,
    FIRST_TOKEN_TIMEOUT_S,
    MODEL,
    TLS,
    AppHandle,
    Apps,
    Fake,
    Gateway,
    SSEEvent,
    ask_stream,
    assert_error,
    free_port,
    sse_events,
    wait_for_records,
)
from tests.gateway.observability.conftest import (
    METRICS_TOKEN,
    Scrape,
    Stack,
    parse_exposition,
    scrape,
    scrape_until,
)

pytestmark = pytest.mark.anyio

REQUESTS = "orchestra_requests_total"
DURATION = "orchestra_request_duration_seconds"
TTFT = "orchestra_time_to_first_token_seconds"
TOKENS = "orchestra_tokens_total"
COST = "orchestra_cost_usd_total"
QUOTA = "orchestra_quota_rejections_total"
UPSTREAM_ERRORS = "orchestra_upstream_errors_total"
UPSTREAM_DURATION = "orchestra_upstream_duration_seconds"
ACTIVE = "orchestra_active_streams"
OVERHEAD = "orchestra_gateway_overhead_seconds"
SESSIONS = "orchestra_sessions_total"

# gpt-4o-mini's default price, USD per token (gateway.settings.DEFAULT_PRICES).
PROMPT_PRICE, COMPLETION_PRICE = 0.15 / 1e6, 0.60 / 1e6
# Costs are kept in whole micro-dollars: each request's cost is rounded to one of them.
MICRO = 1e-6

ROUTES = {"/ask", "/v1/chat/completions"}


def requests_of(s: Scrape, app: str, **labels: str) -> float:
    return s.total(REQUESTS, app=app, **labels)


def delta(before: Scrape, after: Scrape, name: str, **labels: str) -> float:
    return after.total(name, **labels) - before.total(name, **labels)


def expected_cost(prompt_tokens: int, completion_tokens: int) -> float:
    return prompt_tokens * PROMPT_PRICE + completion_tokens * COMPLETION_PRICE


async def settled(gateway: Gateway, app: str, count: int) -> Scrape:
    """The first scrape in which ``count`` requests of ``app`` are counted."""
    after = await scrape_until(gateway, lambda s: requests_of(s, app) >= count)
    assert requests_of(after, app) == count, after.series(REQUESTS)
    return after


async def test_a_streamed_answer_counts_its_request_usage_cost_and_latencies(
    client: httpx.AsyncClient, gateway: Gateway, apps: Apps
) -> None:
    app = await apps.add()
    before = await scrape(gateway)
    streamed = await ask_stream(client, app, {"prompt": "hello metrics"})
    assert streamed.names[-1] == "done", streamed.names
    done = streamed.events[-1].json
    usage = done["usage"]
    after = await settled(gateway, app.name, 1)

    a = app.name
    assert after.value(REQUESTS, route="/ask", app=a, outcome="completed", status_class="2xx") == 1
    assert after.value(TOKENS, app=a, model=done["model"], kind="prompt") == usage["prompt_tokens"]
    assert (
        after.value(TOKENS, app=a, model=done["model"], kind="completion")
        == usage["completion_tokens"]
    )
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0, usage
    cost = after.value(COST, app=a, model=done["model"])
    assert cost > 0
    assert cost == pytest.approx(
        expected_cost(usage["prompt_tokens"], usage["completion_tokens"]), abs=MICRO
    )
    assert after.value(f"{TTFT}_count", app=a, model=done["model"]) == 1
    assert after.value(f"{DURATION}_count", route="/ask", app=a) == 1
    assert delta(before, after, f"{UPSTREAM_DURATION}_count", model=done["model"]) == 1
    assert delta(before, after, f"{OVERHEAD}_count") == 1
    assert after.total(QUOTA, app=a) == 0
    assert after.total(UPSTREAM_ERRORS, app=a) == 0
    # The stream was counted while it was open and released when it ended.
    assert after.series(ACTIVE).count({"app": a}) == 1
    assert after.value(ACTIVE, app=a) == 0

    # The histograms hold the very durations of the interaction record (one source of truth).
    (record,) = [
        r
        for r in await wait_for_records(client, [streamed.request_id], app=a)
        if r["request_id"] == streamed.request_id
    ]
    duration_s = after.value(f"{DURATION}_sum", route="/ask", app=a)
    ttft_s = after.value(f"{TTFT}_sum", app=a, model=done["model"])
    assert duration_s == pytest.approx(record["duration_ms"] / 1000, rel=1e-9)
    assert ttft_s == pytest.approx(record["ttft_ms"] / 1000, rel=1e-9)
    assert 0 < ttft_s <= duration_s
    overhead_s = delta(before, after, f"{OVERHEAD}_sum")
    upstream_s = delta(before, after, f"{UPSTREAM_DURATION}_sum", model=done["model"])
    assert 0 <= overhead_s <= duration_s
    assert overhead_s + upstream_s == pytest.approx(duration_s, abs=1e-3)
    # Every bucket series ends with +Inf, equal to the count.
    assert after.value(f"{DURATION}_bucket", route="/ask", app=a, le="+Inf") == 1


async def test_a_quota_rejection_is_counted_with_its_limit_and_no_upstream_call(
    client: httpx.AsyncClient, gateway: Gateway, apps: Apps, fake: Fake
) -> None:
    app = await apps.add()
    await gateway.cli("quotas", "set", app.name, "--rpm", "1")
    nonce = secrets.token_hex(6)
    before = await scrape(gateway)
    first = await client.post(
        "/ask", json={"prompt": f"one {nonce}", "stream": False}, headers=app.auth
    )
    assert first.status_code == 200, first.text
    second = await client.post(
        "/ask", json={"prompt": f"two {nonce}", "stream": False}, headers=app.auth
    )
    assert_error(second, 429, "quota_exceeded")
    after = await settled(gateway, app.name, 2)

    a = app.name
    assert after.value(QUOTA, app=a, limit="rpm") == 1
    assert after.total(QUOTA, app=a) == 1
    assert after.value(REQUESTS, route="/ask", app=a, outcome="rejected", status_class="4xx") == 1
    assert after.value(REQUESTS, route="/ask", app=a, outcome="completed", status_class="2xx") == 1
    # Tokens, cost and time to first token: the admitted request only.
    usage = first.json()["usage"]
    assert after.total(TOKENS, app=a, kind="prompt") == usage["prompt_tokens"]
    assert after.total(TOKENS, app=a, kind="completion") == usage["completion_tokens"]
    assert after.total(COST, app=a) == pytest.approx(
        expected_cost(usage["prompt_tokens"], usage["completion_tokens"]), abs=MICRO
    )
    assert after.total(f"{TTFT}_count", app=a) == 1
    assert after.value(f"{DURATION}_count", route="/ask", app=a) == 2
    assert after.total(UPSTREAM_ERRORS, app=a) == 0
    # The refused request never reached the upstream: one upstream duration, one overhead.
    assert delta(before, after, f"{UPSTREAM_DURATION}_count") == 1
    assert delta(before, after, f"{OVERHEAD}_count") == 1
    assert len(await fake.requests_with(nonce)) == 1


async def test_a_users_quota_rejection_is_counted_as_user_limit_without_the_user(
    client: httpx.AsyncClient, gateway: Gateway, apps: Apps
) -> None:
    app = await apps.add()
    await gateway.cli("quotas", "set", app.name, "--user-rpm", "1")
    minted = await client.post("/sessions", json={"user": "u-secret-42"}, headers=app.auth)
    assert minted.status_code == 201, minted.text
    user = {"Authorization": f"Bearer {minted.json()['token']}"}
    nonce = secrets.token_hex(6)
    for expected in (200, 429):
        response = await client.post(
            "/ask", json={"prompt": f"hi {nonce}", "stream": False}, headers=user
        )
        assert response.status_code == expected, response.text
    after = await settled(gateway, app.name, 2)
    assert after.value(QUOTA, app=app.name, limit="user_rpm") == 1
    assert after.total(QUOTA, app=app.name) == 1
    # Metrics never name a user (unbounded cardinality).
    assert "u-secret-42" not in after.text


async def test_sessions_minted_and_refused_are_counted_per_app(
    client: httpx.AsyncClient, gateway: Gateway, apps: Apps
) -> None:
    app = await apps.add()
    before = await scrape(gateway)
    minted = await client.post("/sessions", json={"user": "u-secret-43"}, headers=app.auth)
    assert minted.status_code == 201, minted.text
    user = {"Authorization": f"Bearer {minted.json()['token']}"}
    refusals = [
        (user, {"user": "other"}, 403),  # an end user's token cannot mint
        (app.auth, {"user": ""}, 422),  # a bad body, from the app's own backend
        ({"Authorization": "Bearer orc_not-a-token"}, {"user": "x"}, 401),  # names no app
    ]
    for headers, body, status in refusals:
        refused = await client.post("/sessions", json=body, headers=headers)
        assert refused.status_code == status, refused.text
    after = await scrape(gateway)
    assert after.value(SESSIONS, app=app.name, outcome="minted") == 1
    assert after.value(SESSIONS, app=app.name, outcome="refused") == 2
    unknown = {"app": "unknown", "outcome": "refused"}
    assert after.value(SESSIONS, **unknown) == before.value(SESSIONS, **unknown) + 1
    assert "u-secret-43" not in after.text and minted.json()["token"] not in after.text


@pytest.mark.parametrize(
    ("case", "kind", "status"),
    [
        ("fail-500", "upstream_error", 502),
        ("unreachable", "upstream_unavailable", 503),
        ("hang", "upstream_timeout", 504),
    ],
)
async def test_an_upstream_failure_is_counted_by_kind(
    client: httpx.AsyncClient, gateway: Gateway, apps: Apps, case: str, kind: str, status: int
) -> None:
    """The kinds the OrchestraUpstreamDown alert selects are the codes the gateway really uses."""
    if case == "unreachable":
        app = await apps.add(base_url=f"http://127.0.0.1:{free_port()}/v1")
        prompt = "hello"
    else:
        app = await apps.add()
        prompt = "[fail:500]" if case == "fail-500" else "[hang]"
    before = await scrape(gateway)
    with anyio.fail_after(FIRST_TOKEN_TIMEOUT_S + 5):
        response = await client.post("/ask", json={"prompt": prompt}, headers=app.auth)
    assert_error(response, status, kind)
    after = await settled(gateway, app.name, 1)

    a = app.name
    assert (
        after.value(REQUESTS, route="/ask", app=a, outcome="upstream_error", status_class="5xx")
        == 1
    )
    assert after.value(UPSTREAM_ERRORS, app=a, kind=kind) == 1
    assert after.total(UPSTREAM_ERRORS, app=a) == 1
    assert after.total(TOKENS, app=a) == 0
    assert after.total(COST, app=a) == 0
    assert after.total(f"{TTFT}_count", app=a) == 0
    assert after.total(QUOTA, app=a) == 0
    assert after.value(f"{DURATION}_count", route="/ask", app=a) == 1
    assert delta(before, after, f"{UPSTREAM_DURATION}_count") == 1
    assert after.series(ACTIVE).count({"app": a}) == 0  # it never started streaming


class HeldStream:
    """An /ask stream held open after its first delta, until ``leave`` is set."""

    def __init__(self) -> None:
        self.leave = anyio.Event()
        self.request_id = ""

    async def run(
        self, gateway: Gateway, app: AppHandle, prompt: str, *, task_status: TaskStatus[None]
    ) -> None:
        async with gateway.client() as own:
            body = {"prompt": prompt}
            async with own.stream("POST", "/ask", json=body, headers=app.auth) as response:
                assert response.status_code == 200
                self.request_id = response.headers["x-request-id"]
                events = cast(AsyncGenerator[SSEEvent, None], sse_events(response))
                async for event in events:
                    if event.name == "delta":
                        break
                task_status.started()
                await self.leave.wait()
                await events.aclose()  # the client goes away mid-stream


async def test_active_streams_follow_open_streams_and_a_disconnect_is_counted(
    client: httpx.AsyncClient, gateway: Gateway, apps: Apps
) -> None:
    app = await apps.add()
    a = app.name
    long = "[tokens:400] [token-ms:20]"  # 8 s: still streaming while the test looks
    before = await scrape(gateway)
    first, second = HeldStream(), HeldStream()
    with anyio.fail_after(6):
        async with anyio.create_task_group() as tasks:
            await tasks.start(first.run, gateway, app, f"first {long}")
            assert (await scrape(gateway)).value(ACTIVE, app=a) == 1
            await tasks.start(second.run, gateway, app, f"second {long}")
            assert (await scrape(gateway)).value(ACTIVE, app=a) == 2
            second.leave.set()
            one_left = await scrape_until(gateway, lambda s: requests_of(s, a) == 1)
            assert one_left.value(ACTIVE, app=a) == 1
            first.leave.set()
    after = await settled(gateway, a, 2)

    assert after.value(ACTIVE, app=a) == 0
    left = {"outcome": "client_disconnected", "status_class": "4xx"}
    assert after.value(REQUESTS, route="/ask", app=a, **left) == 2
    ids = [first.request_id, second.request_id]
    records = await wait_for_records(client, ids, app=a)
    ours = [r for r in records if r["request_id"] in ids]
    assert {r["outcome"] for r in ours} == {"client_disconnected"}
    # What was streamed before the client left is counted, exactly as recorded.
    assert after.total(TOKENS, app=a, kind="completion") == sum(
        r["completion_tokens"] for r in ours
    )
    assert after.total(TOKENS, app=a, kind="prompt") == sum(r["prompt_tokens"] for r in ours)
    assert all(1 <= r["completion_tokens"] < 400 for r in ours), ours
    assert after.total(f"{TTFT}_count", app=a) == 2
    assert after.value(f"{DURATION}_count", route="/ask", app=a) == 2
    assert delta(before, after, f"{OVERHEAD}_count") == 2


async def test_chat_completions_are_counted_under_their_route(
    client: httpx.AsyncClient, gateway: Gateway, apps: Apps
) -> None:
    app = await apps.add()
    a = app.name
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hello there"}]}
    plain = await client.post("/v1/chat/completions", json=body, headers=app.auth)
    assert plain.status_code == 200, plain.text
    usages = [plain.json()["usage"]]
    streamed = {**body, "stream": True, "stream_options": {"include_usage": True}}
    async with client.stream(
        "POST", "/v1/chat/completions", json=streamed, headers=app.auth
    ) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data: {"):
                chunk = json.loads(line.removeprefix("data: "))
                if chunk.get("usage"):
                    usages.append(chunk["usage"])
    assert len(usages) == 2, usages
    after = await settled(gateway, a, 2)

    route = "/v1/chat/completions"
    assert after.value(REQUESTS, route=route, app=a, outcome="completed", status_class="2xx") == 2
    assert after.total(REQUESTS, route="/ask", app=a) == 0
    assert after.value(f"{DURATION}_count", route=route, app=a) == 2
    assert after.total(TOKENS, app=a, kind="prompt") == sum(u["prompt_tokens"] for u in usages)
    assert after.total(TOKENS, app=a, kind="completion") == sum(
        u["completion_tokens"] for u in usages
    )
    assert after.total(f"{TTFT}_count", app=a) == 2
    assert after.total(COST, app=a) > 0


ALLOWED_LABELS = {
    "route",
    "app",
    "model",
    "outcome",
    "status_class",
    "kind",
    "limit",
    "le",
    "dependency",
    "upstream",
    "policy",
    "score",
    # prometheus-client's own python_info
    "implementation",
    "major",
    "minor",
    "patchlevel",
    "version",
}


async def test_no_label_ever_holds_a_token_a_prompt_or_a_raw_path(
    client: httpx.AsyncClient, gateway: Gateway, apps: Apps, issued_secrets: set[str]
) -> None:
    app = await apps.add(log_content="full")
    nonce = secrets.token_hex(8)
    prompt = f"private-{nonce} my key is sk-live-{nonce}"
    unknown = f"orc_{nonce}{secrets.token_urlsafe(16)}"
    answered = await ask_stream(client, app, {"prompt": prompt})
    rating = {"request_id": answered.request_id, "score": -1, "comment": prompt}
    assert (await client.post("/feedback", json=rating, headers=app.auth)).status_code == 204
    chat = {"model": MODEL, "messages": [{"role": "user", "content": prompt}]}
    await client.post("/v1/chat/completions", json=chat, headers=app.auth)
    await client.post(f"/ask?token={app.token}&q=raw-{nonce}", json={"prompt": prompt})
    await client.post(f"/ask?q=raw-{nonce}", json={"prompt": prompt}, headers=app.auth)
    for wrong in (unknown, app.provider_key):
        await client.post(
            "/ask", json={"prompt": prompt}, headers={"Authorization": f"Bearer {wrong}"}
        )
    await client.get(f"/no-such-route-{nonce}", headers=app.auth)
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    await client.get("/logs", params={"q": nonce}, headers=admin)
    await settled(gateway, app.name, 3)
    exposition = await scrape(gateway)

    text = exposition.text
    for secret in {*issued_secrets, unknown, app.token}:
        assert secret not in text
    assert nonce not in text
    registered = await gateway.with_database(app_service.list_apps)
    names = {info.name for info in registered} | {"unknown"}
    base_urls = {str(info.base_url) for info in registered}
    for _, labels in exposition.samples:
        for key, value in labels:
            assert key in ALLOWED_LABELS, (key, value)
            if key == "route":
                assert value in ROUTES, value
            elif key == "app":
                assert value in names, value
            elif key == "upstream":  # a circuit breaker: an admin-configured base URL
                assert value in base_urls, value
            elif key == "score":  # a rating (POST /feedback)
                assert value in ("up", "down"), value
            else:
                assert "/" not in value or key == "le", (key, value)


async def test_metrics_with_a_token_refuses_a_missing_or_wrong_bearer(stack: Stack) -> None:
    locked = stack.locked
    async with httpx.AsyncClient(base_url=locked.url, timeout=10, verify=TLS) as http:
        refused = [
            await http.get("/metrics"),
            await http.get("/metrics", headers={"Authorization": "Bearer wrong-token"}),
            await http.get("/metrics", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}),
            await http.get("/metrics", headers={"Authorization": METRICS_TOKEN}),  # no scheme
            await http.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}x"}),
            await http.get("/metrics", params={"token": METRICS_TOKEN}),
        ]
        for response in refused:
            assert_error(response, 401, "invalid_token")
            assert "orchestra_" not in response.text
            assert METRICS_TOKEN not in response.text
        allowed = await http.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert allowed.status_code == 200
    assert allowed.headers["content-type"].startswith("text/plain")
    assert "orchestra_requests_total" in parse_exposition(allowed.text).text
    assert METRICS_TOKEN not in allowed.text
    # The gateway without ORCHESTRA_METRICS_TOKEN answers anyone (restricted by bind address).
    async with httpx.AsyncClient(timeout=10, verify=TLS) as http:
        assert (await http.get(f"{stack.gateway.url}/metrics")).status_code == 200
