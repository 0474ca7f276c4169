"""Operator commands take effect on a running gateway within 2 s: revoke, disable, enable."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.gateway.http.conftest import AppHandle, Apps, Gateway, assert_error, poll

pytestmark = pytest.mark.anyio

BOUND_S = 2.0


async def ask(client: httpx.AsyncClient, app: AppHandle) -> httpx.Response:
    return await client.post("/ask", json={"prompt": "hi", "stream": False}, headers=app.auth)


async def status_within_bound(
    client: httpx.AsyncClient, app: AppHandle, status: int, since: float
) -> httpx.Response:
    response = await poll(
        lambda: ask(client, app), lambda r: r.status_code == status, timeout=BOUND_S + 1
    )
    elapsed = time.monotonic() - since
    assert elapsed <= BOUND_S, f"took {elapsed:.2f} s"
    # And it stays that way (no stale cache entry flipping back).
    for _ in range(3):
        assert (await ask(client, app)).status_code == status
    return response


async def test_a_revoked_token_gets_401_within_2_s(
    client: httpx.AsyncClient, gateway: Gateway, apps: Apps
) -> None:
    app = await apps.add()
    other = await apps.issue_token(app)
    assert (await ask(client, app)).status_code == 200  # now cached as valid
    assert (await ask(client, other)).status_code == 200
    revoked = json.loads(await gateway.cli("tokens", "revoke", app.token_id, "--json"))
    done = time.monotonic()
    assert revoked["id"] == app.token_id and revoked["state"] == "revoked"
    assert_error(await status_within_bound(client, app, 401, done), 401, "invalid_token")
    assert (await ask(client, other)).status_code == 200  # the app's other token still works


async def test_a_disabled_app_gets_403_within_2_s_and_works_again_when_enabled(
    client: httpx.AsyncClient, gateway: Gateway, apps: Apps
) -> None:
    app = await apps.add()
    assert (await ask(client, app)).status_code == 200
    await gateway.cli("apps", "disable", app.name)
    done = time.monotonic()
    assert_error(await status_within_bound(client, app, 403, done), 403, "app_disabled")
    await gateway.cli("apps", "enable", app.name)
    done = time.monotonic()
    await status_within_bound(client, app, 200, done)
