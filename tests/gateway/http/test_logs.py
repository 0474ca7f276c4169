"""GET /logs: one record per request, tenant isolation, admin view, filters, pagination."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import httpx
import pytest

from tests.gateway.http.conftest import (
    ADMIN_TOKEN,
    MAX_BODY_BYTES,
    AppHandle,
    Apps,
    ask_stream,
    assert_error,
    get_logs,
    iso,
    wait_for_records,
)

pytestmark = pytest.mark.anyio

RECORD_FIELDS = {
    "id",
    "time",
    "app",
    "request_id",
    "route",
    "model",
    "outcome",
    "http_status",
    "error_code",
    "prompt_tokens",
    "completion_tokens",
    "ttft_ms",
    "duration_ms",
    "origin",
}


async def ok_ask(client: httpx.AsyncClient, app: AppHandle, prompt: str = "hi") -> str:
    response = await client.post("/ask", json={"prompt": prompt, "stream": False}, headers=app.auth)
    assert response.status_code == 200, response.text
    return response.headers["x-request-id"]


async def traffic(client: httpx.AsyncClient, app: AppHandle, count: int) -> list[str]:
    return [await ok_ask(client, app, f"question {i}") for i in range(count)]


async def test_every_request_failed_ones_included_gets_exactly_one_record(
    client: httpx.AsyncClient, apps: Apps
) -> None:
    since = iso(datetime.now(UTC) - timedelta(seconds=1))
    app = await apps.add(origins=("http://one.test",))
    expected: dict[str, tuple[str, int]] = {}  # request id -> (outcome, http status)

    async def post(body: Any, headers: dict[str, str] | None = None, **kw: Any) -> str:
        response = await client.post(
            "/ask", json=body, headers={**app.auth, **(headers or {})}, **kw
        )
        return response.headers["x-request-id"]

    expected[await post({"prompt": "hi", "stream": False})] = ("completed", 200)
    streamed = await ask_stream(client, app, {"prompt": "hi"})
    expected[streamed.request_id] = ("completed", 200)
    expected[await post({"prompt": ""})] = ("rejected", 422)
    expected[await post({"prompt": "hi", "model": "gpt-4o"})] = ("rejected", 400)
    expected[await post({"prompt": "hi"}, {"Origin": "http://two.test"})] = ("rejected", 403)
    expected[await post({"prompt": "x" * (MAX_BODY_BYTES + 1)})] = ("rejected", 413)
    expected[await post({"prompt": "[fail:500]"})] = ("upstream_error", 502)
    expected[await post({"prompt": "[fail:500]", "stream": False})] = ("upstream_error", 502)
    died = await ask_stream(client, app, {"prompt": "[die-after:2]"})
    expected[died.request_id] = ("upstream_error", 502)
    compat = await client.post(
        "/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
        headers=app.auth,
    )
    assert compat.status_code == 200
    expected[compat.headers["x-request-id"]] = ("completed", 200)
    anonymous = await client.post("/ask", json={"prompt": "hi"})
    assert anonymous.status_code == 401
    expected[anonymous.headers["x-request-id"]] = ("rejected", 401)

    records = await wait_for_records(client, list(expected), since=since)
    ours = [r for r in records if r["request_id"] in expected]
    assert sorted(r["request_id"] for r in ours) == sorted(expected), "one record per request"
    for record in ours:
        assert set(record) >= RECORD_FIELDS
        assert (record["outcome"], record["http_status"]) == expected[record["request_id"]], record
    by_id = {r["request_id"]: r for r in ours}
    assert by_id[anonymous.headers["x-request-id"]]["app"] is None
    assert by_id[streamed.request_id]["completion_tokens"] > 0
    assert by_id[streamed.request_id]["ttft_ms"] is not None
    assert by_id[died.request_id]["error_code"] == "upstream_error"
    # No record appears twice later (e.g. a second settle).
    await anyio.sleep(0.3)
    again = await get_logs(client, ADMIN_TOKEN, since=since, limit=1000)
    assert len([r for r in again if r["request_id"] in expected]) == len(expected)


async def test_an_app_sees_only_its_own_records(client: httpx.AsyncClient, apps: Apps) -> None:
    a, b = await apps.add(), await apps.add()
    a_ids, b_ids = await traffic(client, a, 2), await traffic(client, b, 2)
    a_seen = await wait_for_records(client, a_ids, token=a.token)
    await wait_for_records(client, b_ids, token=b.token)
    assert {r["app"] for r in a_seen} == {a.name}
    assert not {r["request_id"] for r in a_seen} & set(b_ids)
    for outcome in ("completed", "rejected"):
        only = await get_logs(client, a.token, outcome=outcome)
        assert {r["app"] for r in only} <= {a.name}
    assert_error(
        await client.get("/logs", params={"app": b.name}, headers=a.auth), 403, "forbidden"
    )
    own = await client.get("/logs", params={"app": a.name}, headers=a.auth)
    assert own.status_code == 200
    assert {r["app"] for r in own.json()["records"]} == {a.name}


async def test_logs_need_a_token(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/logs"), 401, "invalid_token")
    assert_error(
        await client.get("/logs", headers={"Authorization": "Bearer wrong-admin-token"}),
        401,
        "invalid_token",
    )


async def test_the_admin_sees_every_app_and_can_filter(
    client: httpx.AsyncClient, apps: Apps
) -> None:
    a, b = await apps.add(), await apps.add()
    a_ids, b_ids = await traffic(client, a, 2), await traffic(client, b, 1)
    everything = await wait_for_records(client, a_ids + b_ids)
    assert {a.name, b.name} <= {r["app"] for r in everything}
    only_b = await get_logs(client, ADMIN_TOKEN, app=b.name)
    assert [r["request_id"] for r in only_b] == b_ids
    response = await client.get(
        "/logs", params={"app": "no-such-app"}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert_error(response, 400, "invalid_request")


async def test_filters_since_until_outcome_and_limit(client: httpx.AsyncClient, apps: Apps) -> None:
    app = await apps.add()
    before = datetime.now(UTC) - timedelta(milliseconds=1)
    ok_ids = await traffic(client, app, 3)
    failed = await client.post("/ask", json={"prompt": "[fail:500]"}, headers=app.auth)
    failed_id = failed.headers["x-request-id"]
    await wait_for_records(client, [*ok_ids, failed_id], token=app.token)
    after = datetime.now(UTC) + timedelta(seconds=1)

    def ids(records: list[dict[str, Any]]) -> list[str]:
        return [r["request_id"] for r in records]

    newest_first = [failed_id, *reversed(ok_ids)]
    assert ids(await get_logs(client, app.token)) == newest_first
    assert ids(await get_logs(client, app.token, since=iso(before))) == newest_first
    assert ids(await get_logs(client, app.token, since="10m")) == newest_first
    assert await get_logs(client, app.token, since=iso(after)) == []
    assert await get_logs(client, app.token, until=iso(before)) == []
    assert ids(await get_logs(client, app.token, until=iso(after))) == newest_first
    assert ids(await get_logs(client, app.token, outcome="upstream_error")) == [failed_id]
    assert ids(await get_logs(client, app.token, outcome="completed")) == list(reversed(ok_ids))
    assert ids(await get_logs(client, app.token, limit=2)) == newest_first[:2]
    assert len(await get_logs(client, app.token, limit=1000)) == 4
    for bad in ({"limit": 1001}, {"limit": 0}, {"limit": "ten"}, {"since": "yesterday"},
                {"until": "2026-01-01T00:00:00"}, {"cursor": "abc"}):  # fmt: skip
        response = await client.get("/logs", params=bad, headers=app.auth)
        assert_error(response, 400, "invalid_request")


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "\u00b2"},  # str.isdigit() accepts it, int() does not
        {"limit": "9" * 5000},  # past int()'s 4,300 digits
        {"since": "99999999999d"},  # past timedelta's range
        {"since": "999999d"},  # before the year 1
        {"since": "0001-01-01T00:00:00+01:00"},  # before the year 1 in UTC
        {"until": "9999-12-31T23:59:59-01:00"},  # after the year 9999 in UTC
        {"cursor": "9" * 23},  # past a 64-bit row id
        {"app": "a\x00b"},  # PostgreSQL refuses NUL
        {"outcome": "\x00"},
    ],
    ids=lambda params: next(iter(params)),
)
async def test_out_of_range_filters_are_400_not_500(
    client: httpx.AsyncClient, params: dict[str, str]
) -> None:
    """Found by tests/gateway/http/test_openapi_fuzz.py: each of these was a 500."""
    response = await client.get(
        "/logs", params=params, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert_error(response, 400, "invalid_request")


async def test_cursor_pagination_walks_every_record_once(
    client: httpx.AsyncClient, apps: Apps
) -> None:
    app = await apps.add()
    sent = await traffic(client, app, 7)
    await wait_for_records(client, sent, token=app.token)
    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": 3}
        if cursor is not None:
            params["cursor"] = cursor
        response = await client.get("/logs", params=params, headers=app.auth)
        assert response.status_code == 200
        body = response.json()
        assert set(body) == {"records", "next_cursor"}
        seen.extend(body["records"])
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
        assert pages < 10
    assert pages == 3
    assert [r["request_id"] for r in seen] == list(reversed(sent))
    ids = [int(r["id"]) for r in seen]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == len(ids)


async def test_prompt_and_answer_are_logged_only_with_full_content(
    client: httpx.AsyncClient, apps: Apps
) -> None:
    full = await apps.add(log_content="full")
    meta = await apps.add()
    streamed = await ask_stream(client, full, {"prompt": "Remember this sentence"})
    json_id = await ok_ask(client, full, "And this one")
    hidden = await ask_stream(client, meta, {"prompt": "Forget this sentence"})
    records = await wait_for_records(client, [streamed.request_id, json_id], token=full.token)
    by_id = {r["request_id"]: r for r in records}
    assert "Remember this sentence" in by_id[streamed.request_id]["prompt"]
    assert by_id[streamed.request_id]["answer"] == streamed.text
    assert "And this one" in by_id[json_id]["prompt"]
    assert by_id[json_id]["answer"]
    (record,) = await wait_for_records(client, [hidden.request_id], token=meta.token)
    assert "prompt" not in record and "answer" not in record
    assert "Forget this sentence" not in str(record)
