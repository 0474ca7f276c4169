"""GET /status: its shape, the app part for a token, and 503 when the database goes away."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

import gateway
from tests.conftest import PostgresSchema
from tests.gateway.http.conftest import (
    ADMIN_TOKEN,
    MODEL,
    AppHandle,
    Apps,
    Gateway,
    assert_error,
    gateway_via_proxy,
    poll,
    wait_for_records,
)
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.anyio


async def test_status_shape(client: httpx.AsyncClient) -> None:
    response = await client.get("/status")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"status", "version", "uptime_s", "checks", "circuits"}
    # Failures seen earlier in the session are listed, but the breaker never trips here.
    assert set(body["circuits"].values()) <= {"closed"}, body["circuits"]
    assert body["status"] == "ok"
    assert body["version"] == gateway.__version__
    assert isinstance(body["uptime_s"], int | float) and body["uptime_s"] >= 0
    assert body["checks"] == {"database": "ok", "redis": "disabled"}
    later = (await client.get("/status")).json()
    assert later["uptime_s"] >= body["uptime_s"]


async def test_status_with_an_app_token_shows_the_app(
    client: httpx.AsyncClient, apps: Apps
) -> None:
    app = await apps.add(allow_models=("gpt-4o",))
    body = (await client.get("/status", headers=app.auth)).json()
    assert body["status"] == "ok"
    assert body["app"]["name"] == app.name
    assert body["app"]["model"] == MODEL
    assert set(body["app"]["allowed_models"]) == {MODEL, "gpt-4o"}
    assert "quota" in body["app"]
    # A bad token or the admin token is not an app: the public part only, still 200.
    for token in ("orc_" + "x" * 43, ADMIN_TOKEN):
        response = await client.get("/status", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200
        assert "app" not in response.json()


# --- the database goes away -----------------------------------------------------------------


async def status_of(http: httpx.AsyncClient) -> httpx.Response:
    return await http.get("/status")


@pytest.mark.postgres
async def test_status_is_503_while_the_database_is_unreachable(
    tmp_path: Path, postgres_schema: PostgresSchema
) -> None:
    async with gateway_via_proxy(
        tmp_path,
        postgres_schema,
        name="pg-gateway",
    ) as (pg_gateway, forwarder):
        await _while_the_database_goes_away(pg_gateway, forwarder)


async def _while_the_database_goes_away(pg_gateway: Gateway, forwarder: TcpProxy) -> None:
    apps = Apps(pg_gateway, default_fake=None, secrets=set(), prefix="pg")
    app: AppHandle = await apps.add(base_url="http://127.0.0.1:9/v1")
    async with pg_gateway.client() as http:
        healthy = await status_of(http)
        assert healthy.status_code == 200, healthy.text
        assert healthy.json()["checks"]["database"] == "ok"

        forwarder.stop()
        down = await poll(lambda: status_of(http), lambda r: r.status_code == 503)
        body = down.json()
        assert body["status"] == "degraded"
        assert body["checks"] == {"database": "error", "redis": "disabled"}
        assert "Traceback" not in down.text
        # A token the gateway has not seen yet cannot be checked: 503, not a 500 or a 401.
        refused = await http.post("/ask", json={"prompt": "hi"}, headers=app.auth)
        assert_error(refused, 503, "storage_unavailable")

        await forwarder.start()
        up = await poll(lambda: status_of(http), lambda r: r.status_code == 200, timeout=10)
        assert up.json()["checks"]["database"] == "ok"
        # The record of the refused request was kept while the database was away.
        await wait_for_records(http, [refused.headers["x-request-id"]], timeout=10)
