"""End users everywhere an operator looks: records, /logs?user=, logs tail --user, usage --by
user; and each user's conversation threads are theirs alone."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.gateway.http.conftest import AppHandle, Apps, Gateway, assert_error, poll

pytestmark = pytest.mark.anyio


async def mint(client: httpx.AsyncClient, app: AppHandle, user: str) -> dict[str, str]:
    response = await client.post("/sessions", json={"user": user}, headers=app.auth)
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


async def ask(client: httpx.AsyncClient, headers: dict[str, str], **body: Any) -> httpx.Response:
    return await client.post(
        "/ask", json={"prompt": "hi", "stream": False, **body}, headers=headers
    )


async def test_records_carry_the_user_and_filter_by_it(
    client: httpx.AsyncClient, gateway: Gateway, apps: Apps
) -> None:
    app = await apps.add()
    alice, bob = await mint(client, app, "alice [x]"), await mint(client, app, "bob")
    assert (await ask(client, alice)).status_code == 200
    assert (await ask(client, alice)).status_code == 200
    assert (await ask(client, bob)).status_code == 200
    assert (await ask(client, app.auth)).status_code == 200
    bad = await ask(client, alice, model="not-allowed-model")
    assert bad.status_code == 400

    async def records(params: dict[str, str]) -> list[dict[str, Any]]:
        response = await client.get("/logs", params=params, headers=app.auth)
        assert response.status_code == 200, response.text
        found: list[dict[str, Any]] = response.json()["records"]
        return found

    everything = await poll(lambda: records({}), lambda rs: len(rs) >= 5)
    assert sorted(str(r["user"]) for r in everything) == [
        "None",
        "alice [x]",
        "alice [x]",
        "alice [x]",
        "bob",
    ]
    only_alice = await records({"user": "alice [x]"})
    assert len(only_alice) == 3 and {r["user"] for r in only_alice} == {"alice [x]"}

    tail = await gateway.cli("logs", "tail", "--app", app.name, "--user", "bob", "--json")
    lines = [json.loads(line) for line in tail.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0]["user"] == "bob"
    text = await gateway.cli("logs", "tail", "--app", app.name, "--user", "alice [x]")
    assert text.count("alice [x]") == 3

    usage = json.loads(await gateway.cli("usage", "--app", app.name, "--by", "user", "--json"))
    by_user = {row["user"]: row for row in usage["apps"]}
    assert set(by_user) == {None, "alice [x]", "bob"}
    assert by_user["alice [x]"]["requests"] == 3 and by_user["alice [x]"]["rejections"] == 1
    assert by_user["bob"]["prompt_tokens"] > 0 and by_user["bob"]["cost_usd"] >= 0
    plain = json.loads(await gateway.cli("usage", "--app", app.name, "--json"))
    assert [row["requests"] for row in plain["apps"]] == [5] and "user" not in plain["apps"][0]


async def test_conversations_are_kept_per_user(
    client: httpx.AsyncClient, gateway: Gateway, apps: Apps
) -> None:
    app = await apps.add()
    await gateway.cli("apps", "update", app.name, "--workflow", "conversation")
    alice, bob = await mint(client, app, "alice"), await mint(client, app, "bob")

    async def asked(headers: dict[str, str]) -> httpx.Response:
        return await ask(client, headers, conversation_id="thread-1")

    await poll(lambda: asked(alice), lambda r: r.status_code == 200, timeout=10)
    mine = await client.get("/conversations/thread-1", headers=alice)
    assert mine.status_code == 200 and mine.json()["messages"], mine.text
    for other in (bob, app.auth):
        assert_error(await client.get("/conversations/thread-1", headers=other), 404, "not_found")
        refused = await client.delete("/conversations/thread-1", headers=other)
        assert_error(refused, 404, "not_found")
    assert (await client.get("/conversations/thread-1", headers=alice)).status_code == 200
