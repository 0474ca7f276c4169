"""GET /status: its shape, the app part for a token, and 503 when the database goes away."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx
import pytest
from anyio.abc import SocketAttribute, SocketStream, TaskGroup, TaskStatus

import gateway
from gateway.security.keyring import generate_master_key
from gateway.storage.database import Database
from tests.conftest import POSTGRES_URL, PostgresSchema
from tests.gateway.http.conftest import (
    ADMIN_TOKEN,
    MODEL,
    AppHandle,
    Apps,
    Gateway,
    assert_error,
    poll,
    serving_gateway,
    wait_for_records,
)

pytestmark = pytest.mark.anyio

POSTGRES_PORT = 5432


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


@dataclass
class Forwarder:
    """A TCP relay 127.0.0.1:port -> PostgreSQL, run in the test's event loop; stoppable."""

    port: int
    scope: anyio.CancelScope

    def stop(self) -> None:
        """Close the listener and every relayed connection at once."""
        self.scope.cancel()


async def _pipe(source: SocketStream, sink: SocketStream, done: anyio.CancelScope) -> None:
    try:
        async for chunk in source:
            await sink.send(chunk)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        pass
    finally:
        done.cancel()


async def _relay(client: SocketStream) -> None:
    async with client:
        try:
            upstream = await anyio.connect_tcp("127.0.0.1", POSTGRES_PORT)
        except OSError:
            return
        async with upstream, anyio.create_task_group() as pipes:
            pipes.start_soon(_pipe, client, upstream, pipes.cancel_scope)
            pipes.start_soon(_pipe, upstream, client, pipes.cancel_scope)


async def _serve(port: int, *, task_status: TaskStatus[Forwarder]) -> None:
    with anyio.CancelScope() as scope:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=port)
        async with listener:
            bound = listener.extra(SocketAttribute.local_port)
            task_status.started(Forwarder(bound, scope))
            await listener.serve(_relay)


async def start_forwarder(tasks: TaskGroup, port: int = 0) -> Forwarder:
    forwarder: Forwarder = await tasks.start(_serve, port)
    return forwarder


async def status_of(http: httpx.AsyncClient) -> httpx.Response:
    return await http.get("/status")


@pytest.mark.postgres
async def test_status_is_503_while_the_database_is_unreachable(
    tmp_path: Path, postgres_schema: PostgresSchema
) -> None:
    migrated = Database.open(POSTGRES_URL, schema=postgres_schema.name)
    try:
        await migrated.upgrade()
    finally:
        await migrated.close()
    async with anyio.create_task_group() as tasks:
        forwarder = await start_forwarder(tasks)
        async with serving_gateway(
            tmp_path / "home",
            tmp_path / "logs",
            name="pg-gateway",
            database_url=f"postgresql+asyncpg://postgres@127.0.0.1:{forwarder.port}/test",
            database_schema=postgres_schema.name,
            master_key=generate_master_key(),
        ) as pg_gateway:
            await _while_the_database_goes_away(pg_gateway, tasks, forwarder)
        tasks.cancel_scope.cancel()


async def _while_the_database_goes_away(
    pg_gateway: Gateway, tasks: TaskGroup, forwarder: Forwarder
) -> None:
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

        await start_forwarder(tasks, forwarder.port)
        up = await poll(lambda: status_of(http), lambda r: r.status_code == 200, timeout=10)
        assert up.json()["checks"]["database"] == "ok"
        # The record of the refused request was kept while the database was away.
        await wait_for_records(http, [refused.headers["x-request-id"]], timeout=10)
