"""End users' session tokens against the real gateway: mint with the app token, use them on
every route that accepts them, and refuse them everywhere else or once they are no good."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import anyio
import httpx
import openai
import pytest

from tests.gateway.http.conftest import (
    ORCHESTRA,
    AppHandle,
    Apps,
    Gateway,
    assert_error,
    poll,
)

pytestmark = pytest.mark.anyio

BOUND_S = 2.0


async def mint(client: httpx.AsyncClient, app: AppHandle, user: str = "u-123", **extra: Any) -> str:
    response = await client.post("/sessions", json={"user": user, **extra}, headers=app.auth)
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"token", "expires_at", "user"} and body["user"] == user
    assert body["expires_at"].endswith("Z")
    assert not body["token"].startswith("orc_") and app.token not in body["token"]
    token: str = body["token"]
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def ask(client: httpx.AsyncClient, token: str, **body: Any) -> httpx.Response:
    return await client.post(
        "/ask", json={"prompt": "hi", "stream": False, **body}, headers=bearer(token)
    )


async def refused_within_bound(client: httpx.AsyncClient, token: str, since: float) -> None:
    response = await poll(
        lambda: ask(client, token), lambda r: r.status_code == 401, timeout=BOUND_S + 1
    )
    assert time.monotonic() - since <= BOUND_S
    assert_error(response, 401, "invalid_token")
    for _ in range(3):
        assert (await ask(client, token)).status_code == 401


async def test_a_session_works_on_ask_chat_models_and_status(
    client: httpx.AsyncClient, gateway: Gateway, apps: Apps
) -> None:
    app = await apps.add()
    token = await mint(client, app, ttl_s=60)
    answered = await ask(client, token)
    assert answered.status_code == 200, answered.text
    streamed = await client.post("/ask", json={"prompt": "hi"}, headers=bearer(token))
    assert streamed.status_code == 200 and "event: done" in streamed.text
    sdk = openai.AsyncOpenAI(api_key=token, base_url=f"{gateway.url}/v1", max_retries=0)
    try:
        completion = await sdk.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}]
        )
        assert completion.choices[0].message.content
        models = await sdk.models.list()
        assert [m.id async for m in models]
    finally:
        await sdk.close()
    status = (await client.get("/status", headers=bearer(token))).json()
    assert status["app"]["name"] == app.name
    user = status["user"]
    assert (user["id"], user["credential"]) == ("u-123", "session")
    assert set(user) == {"id", "credential", "quota"}  # quota: the per-user limits left


async def test_a_session_cannot_mint_sessions_nor_read_logs(
    client: httpx.AsyncClient, apps: Apps
) -> None:
    app = await apps.add()
    token = await mint(client, app)
    refused = await client.post("/sessions", json={"user": "x"}, headers=bearer(token))
    assert_error(refused, 403, "insufficient_scope")
    assert_error(await client.get("/logs", headers=bearer(token)), 403, "insufficient_scope")
    assert (await client.get("/logs", headers=app.auth)).status_code == 200


async def test_minting_checks_ttl_user_and_origin(client: httpx.AsyncClient, apps: Apps) -> None:
    app = await apps.add(origins=("https://shop.example",))
    too_long = await client.post("/sessions", json={"user": "u", "ttl_s": 3601}, headers=app.auth)
    assert_error(too_long, 422, "invalid_request")
    assert "session_max_ttl_s" in too_long.json()["error"]["message"]
    for body in (
        {"user": ""},
        {"user": "a\nb"},
        {"user": "x" * 129},
        {"user": "u", "ttl_s": 0},
        {"user": "u", "ttl_s": "60"},
        {"user": "u", "origin": "https://evil.example"},
    ):
        response = await client.post("/sessions", json=body, headers=app.auth)
        assert_error(response, 422, "invalid_request")
    assert_error(await client.post("/sessions", json={"user": "u"}), 401, "invalid_token")


async def test_a_session_bound_to_an_origin_is_refused_elsewhere(
    client: httpx.AsyncClient, apps: Apps
) -> None:
    app = await apps.add(origins=("https://shop.example", "https://other.example"))
    token = await mint(client, app, origin="https://shop.example")
    ok = await client.post(
        "/ask",
        json={"prompt": "hi", "stream": False},
        headers={**bearer(token), "Origin": "https://shop.example"},
    )
    assert ok.status_code == 200, ok.text
    for headers in ({"Origin": "https://other.example"}, {}):
        refused = await client.post(
            "/ask", json={"prompt": "hi", "stream": False}, headers={**bearer(token), **headers}
        )
        assert_error(refused, 403, "origin_not_allowed")


async def test_an_expired_session_gets_token_expired(client: httpx.AsyncClient, apps: Apps) -> None:
    app = await apps.add()
    token = await mint(client, app, ttl_s=1)
    assert (await ask(client, token)).status_code == 200
    # The gateway tolerates 5 s of clock skew between replicas on the expiry.
    await anyio.sleep(6.2)
    assert_error(await ask(client, token), 401, "token_expired")


def _tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "someone-else"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


async def test_tampered_and_other_apps_sessions_are_refused(
    client: httpx.AsyncClient, apps: Apps
) -> None:
    app, other = await apps.add(), await apps.add()
    token = await mint(client, app)
    assert_error(await ask(client, _tampered(token)), 401, "invalid_token")
    header, payload, signature = token.split(".")
    other_token = await mint(client, other)
    _, other_payload, _ = other_token.split(".")
    # The other app's claims under this app's signature, and the reverse.
    assert_error(await ask(client, f"{header}.{other_payload}.{signature}"), 401, "invalid_token")
    none_header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    assert_error(await ask(client, f"{none_header}.{payload}."), 401, "invalid_token")
    assert (await ask(client, token)).status_code == 200


async def test_revoking_a_user_then_all_within_2_s(
    client: httpx.AsyncClient, gateway: Gateway, apps: Apps
) -> None:
    app = await apps.add()
    alice, bob = await mint(client, app, "alice"), await mint(client, app, "bob")
    assert (await ask(client, alice)).status_code == 200
    assert (await ask(client, bob)).status_code == 200
    await gateway.cli("sessions", "revoke", app.name, "--user", "alice")
    done = time.monotonic()
    await refused_within_bound(client, alice, done)
    assert (await ask(client, bob)).status_code == 200
    await anyio.sleep(1.1)  # revocation is by the second a session was issued
    fresh = await mint(client, app, "alice")
    assert (await ask(client, fresh)).status_code == 200
    await gateway.cli("sessions", "revoke", app.name, "--all")
    done = time.monotonic()
    await refused_within_bound(client, bob, done)
    await refused_within_bound(client, fresh, done)
    assert (
        await client.post("/ask", json={"prompt": "x", "stream": False}, headers=app.auth)
    ).status_code == 200


async def test_a_disabled_apps_sessions_get_invalid_token(
    client: httpx.AsyncClient, apps: Apps
) -> None:
    app = await apps.add()
    token = await mint(client, app)
    assert (await ask(client, token)).status_code == 200
    await apps.set_disabled(app, disabled=True)
    await refused_within_bound(client, token, time.monotonic())
    await apps.set_disabled(app, disabled=False)
    await poll(lambda: ask(client, token), lambda r: r.status_code == 200, timeout=BOUND_S + 1)


async def test_rotating_the_secret_keeps_old_sessions_unless_revoke(
    client: httpx.AsyncClient, gateway: Gateway, apps: Apps
) -> None:
    app = await apps.add()
    old = await mint(client, app)
    assert (await ask(client, old)).status_code == 200
    rotated = json.loads(await gateway.cli("sessions", "rotate-secret", app.name, "--json"))
    assert rotated["retired"] == 1 and rotated["revoked"] is False
    await anyio.sleep(BOUND_S)
    new = await mint(client, app)
    assert new.split(".")[0] != old.split(".")[0]  # another kid
    assert (await ask(client, old)).status_code == 200
    assert (await ask(client, new)).status_code == 200
    await gateway.cli("sessions", "rotate-secret", app.name, "--revoke")
    done = time.monotonic()
    await refused_within_bound(client, old, done)
    await refused_within_bound(client, new, done)
    await anyio.sleep(1.1)
    assert (await ask(client, await mint(client, app))).status_code == 200


async def test_sessions_cli_refuses_bad_arguments(gateway: Gateway, apps: Apps) -> None:
    app = await apps.add()
    for args in ([app.name], [app.name, "--user", "u", "--all"], ["no-such-app", "--all"]):
        result = await anyio.run_process(
            [str(ORCHESTRA), "sessions", "revoke", *args], env=gateway.env, check=False
        )
        assert result.returncode in (2, 3), (args, result.stderr)
        assert b"Traceback" not in result.stderr


async def test_a_retired_secret_keeps_the_max_ttl_in_force_when_it_was_retired(
    client: httpx.AsyncClient, gateway: Gateway, apps: Apps
) -> None:
    """Shortening ``session_max_ttl_s`` after a rotation does not cut the old sessions short:
    they were minted under the old limit (before, the retired secret's life was computed from
    the current setting, so this session was refused a second later)."""
    app = await apps.add()
    old = await mint(client, app, ttl_s=900)
    assert (await ask(client, old)).status_code == 200
    await gateway.cli("sessions", "rotate-secret", app.name)
    await gateway.cli("apps", "update", app.name, "--session-max-ttl", "1")
    await anyio.sleep(2.5)  # past the new limit, and past every replica's epoch interval
    assert (await ask(client, old)).status_code == 200
    assert (await ask(client, await mint(client, app, ttl_s=1))).status_code == 200
