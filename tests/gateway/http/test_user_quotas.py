"""Per-user quotas through a real gateway, with session tokens minted by the app's token.

One user at their limit is refused (429, ``"scope": "user"``, Retry-After) while another
user of the same app, and the app's own token, are served; the app's limit refuses everyone
with ``"scope": "app"``; /status with a session token shows what is left of the user's limits
(and the RateLimit headers show the tighter of the app's and the user's).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.gateway.http.conftest import AppHandle, Apps, Gateway, assert_error

pytestmark = pytest.mark.anyio


async def mint(client: httpx.AsyncClient, app: AppHandle, user: str) -> dict[str, str]:
    response = await client.post("/sessions", json={"user": user}, headers=app.auth)
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


async def ask(client: httpx.AsyncClient, headers: dict[str, str]) -> httpx.Response:
    return await client.post("/ask", json={"prompt": "hi", "stream": False}, headers=headers)


async def test_a_user_at_their_limit_is_refused_while_others_are_served(
    client: httpx.AsyncClient, gateway: Gateway, apps: Apps
) -> None:
    app = await apps.add()
    await gateway.cli("quotas", "set", app.name, "--rpm", "100", "--user-rpm", "2")
    alice, bob = await mint(client, app, "alice"), await mint(client, app, "bob")
    for _ in range(2):
        assert (await ask(client, alice)).status_code == 200
    refused = await ask(client, alice)
    error = assert_error(refused, 429, "quota_exceeded")
    assert error["scope"] == "user"
    assert "of this user" in error["message"]
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["ratelimit-remaining"] == "0"
    # The OpenAI-compatible route says the same in OpenAI's error shape.
    v1 = await client.post(
        "/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
        headers=alice,
    )
    assert v1.status_code == 429
    assert (v1.json()["error"]["code"], v1.json()["error"]["scope"]) == ("quota_exceeded", "user")
    served = await ask(client, bob)
    assert served.status_code == 200, served.text
    assert served.headers["ratelimit-remaining"] == "1"  # bob's own limit is the tighter
    assert (await ask(client, app.auth)).status_code == 200  # the app token has no user limit


async def test_the_apps_limit_refuses_every_user_with_scope_app(
    client: httpx.AsyncClient, gateway: Gateway, apps: Apps
) -> None:
    app = await apps.add()
    await gateway.cli("quotas", "set", app.name, "--rpm", "2", "--user-rpm", "10")
    alice, bob = await mint(client, app, "alice"), await mint(client, app, "bob")
    assert (await ask(client, alice)).status_code == 200
    assert (await ask(client, bob)).status_code == 200
    for headers in (alice, bob, await mint(client, app, "carol"), app.auth):
        error = assert_error(await ask(client, headers), 429, "quota_exceeded")
        assert error["scope"] == "app"


async def test_status_with_a_session_shows_the_users_remaining_limits(
    client: httpx.AsyncClient, gateway: Gateway, apps: Apps
) -> None:
    app = await apps.add()
    await gateway.cli(
        "quotas",
        "set",
        app.name,
        "--rpm",
        "50",
        "--user-rpm",
        "3",
        "--user-tokens-per-day",
        "1000000",
    )
    alice = await mint(client, app, "alice")
    answered = await ask(client, alice)
    assert answered.status_code == 200
    used = answered.json()["usage"]
    status = await client.get("/status", headers=alice)
    assert status.status_code == 200, status.text
    body: dict[str, Any] = status.json()
    assert body["user"]["id"] == "alice"
    quota = body["user"]["quota"]
    assert quota["limits"] == {
        "rpm": 3,
        "tpm": None,
        "tokens_per_day": 1_000_000,
        "max_concurrent": None,
        "budget_usd_month": None,
    }
    assert quota["remaining"]["rpm"]["remaining"] == 2
    spent = used["prompt_tokens"] + used["completion_tokens"]
    assert quota["remaining"]["tokens_per_day"]["remaining"] == 1_000_000 - spent
    assert body["app"]["quota"]["remaining"]["rpm"]["remaining"] == 49
    # Reading /status holds nothing: twice the same, and the headers show the tighter.
    again = await client.get("/status", headers=alice)
    assert again.json()["user"]["quota"]["remaining"]["rpm"]["remaining"] == 2
    assert again.headers["ratelimit-limit"] == "3"
    assert again.headers["ratelimit-remaining"] == "2"
    # Bob has used nothing; the app token's /status is as before (no user part).
    bob = (await client.get("/status", headers=await mint(client, app, "bob"))).json()
    assert bob["user"]["quota"]["remaining"]["rpm"]["remaining"] == 3
    plain = await client.get("/status", headers=app.auth)
    assert "user" not in plain.json() and "ratelimit-limit" not in plain.headers
