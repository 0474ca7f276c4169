"""Real servers for the HTTP tests: two OpenAI fakes and one gateway, as child processes.

Everything here talks over real sockets: ``orchestra fake-openai`` and ``orchestra serve`` run as
subprocesses on free ports (started once per session), the tests use httpx and the official
``openai`` SDK as clients. Apps are registered in-process through ``gateway.services`` on the
gateway's own database, each with a unique name, so tests never see each other's apps.

The gateway runs with short timeouts (constants below) so that timeout paths take about a
second, and its stderr (JSON logs) is captured to a file that the secret-leak test reads.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import anyio
import httpx
import openai
import pytest

from gateway.security.keyring import generate_master_key
from tests.support import processes
from tests.support.answers import Streamed, ask_stream, assert_error, assert_no_traceback
from tests.support.apps import MODEL, AppHandle, Apps, slug
from tests.support.cli import run_cli
from tests.support.databases import POSTGRES_PORT, PostgresSchema
from tests.support.polling import poll
from tests.support.processes import ORCHESTRA, Proc, child_env, free_port, stopping, wait_http
from tests.support.servers import TLS, Fake, Gateway
from tests.support.sse import SSEEvent, parse_block, sse_events
from tests.support.tcp_proxy import TcpProxy, start_tcp_proxy

# Re-exported: the tests of several folders import them from here.
__all__ = [
    "MODEL",
    "ORCHESTRA",
    "TLS",
    "AppHandle",
    "Apps",
    "Fake",
    "Gateway",
    "SSEEvent",
    "Streamed",
    "ask_stream",
    "assert_error",
    "assert_no_traceback",
    "child_env",
    "free_port",
    "parse_block",
    "poll",
    "run_cli",
    "sse_events",
]

T = TypeVar("T")


# The session gateway's settings (short, so that timeout paths are quick to test).
FIRST_TOKEN_TIMEOUT_S = 1.5
IDLE_TIMEOUT_S = 1.5
PING_INTERVAL_S = 0.3
AUTH_CACHE_TTL_S = 0.5
MAX_BODY_BYTES = 65_536
MAX_PROMPT_CHARS = 8_000
FAST_FAKE_TOKENS = 8
SLOW_FAKE_TOKEN_MS = 30
ADMIN_TOKEN = "adm_" + secrets.token_urlsafe(24)

# How long to wait for a server, a record or a state change before failing.
START_TIMEOUT_S = 30.0
WAIT_TIMEOUT_S = 5.0


# --- processes ------------------------------------------------------------------------------

#: The suite's gateways and fakes (tests/support/processes.py); stdout apart from the JSON logs.
Server = Proc


def spawn(name: str, args: list[str], env: Mapping[str, str], logs: Path, port: int) -> Server:
    """``orchestra ARGS --port PORT``, its stderr (JSON logs) in ``logs/NAME.err``."""
    argv = [str(ORCHESTRA), *args, "--port", str(port)]
    return processes.spawn(name, argv, env, logs, port, stdout_apart=True)


# --- the fakes and the gateway --------------------------------------------------------------


def gateway_settings(home: Path, **overrides: object) -> dict[str, object]:
    settings: dict[str, object] = {
        "home": home,
        "first_token_timeout_s": FIRST_TOKEN_TIMEOUT_S,
        "idle_timeout_s": IDLE_TIMEOUT_S,
        "ping_interval_s": PING_INTERVAL_S,
        "auth_cache_ttl_s": AUTH_CACHE_TTL_S,
        "connect_timeout_s": 2,
        "max_body_bytes": MAX_BODY_BYTES,
        "max_prompt_chars": MAX_PROMPT_CHARS,
        "log_flush_interval_s": 0.05,
        "admin_token": ADMIN_TOKEN,
        "log_format": "json",
        # These tests provoke upstream failures on purpose, one request at a time: no retries,
        # and no circuit breaker tripping over the shared fake (tests/gateway/resilience has those).
        "upstream_attempts": 1,
        "circuit_failure_threshold": 1_000_000,
        # A client that leaves stops its answer at once (the resume tests set a grace).
        "stream_detach_grace_s": 0,
    }
    settings.update(overrides)
    return settings


@contextmanager
def running_gateway(
    home: Path, logs: Path, *, name: str = "gateway", **overrides: object
) -> Iterator[Gateway]:
    """`orchestra serve` on a free port with these settings (the database must be ready)."""
    settings = gateway_settings(home, **overrides)
    env = child_env(settings)
    server = spawn(name, ["serve"], env, logs, free_port())
    try:
        server.wait_ready("/status")
        database_url = str(
            settings.get("database_url") or f"sqlite+aiosqlite:///{home}/orchestra.db"
        )
        schema = settings.get("database_schema")
        yield Gateway(server, home, env, database_url, None if schema is None else str(schema))
    finally:
        server.stop()


@asynccontextmanager
async def fresh_gateway(root: Path, *, name: str, **overrides: object) -> AsyncIterator[Gateway]:
    """A gateway of its own on a new SQLite home in ``root`` (`orchestra init` first)."""
    home = root / "home"
    await anyio.to_thread.run_sync(run_cli, ["init"], child_env({"home": home}))
    async with serving_gateway(
        home,
        root / "logs",
        name=name,
        database_url=f"sqlite+aiosqlite:///{home}/orchestra.db",
        **overrides,
    ) as gateway:
        yield gateway


@asynccontextmanager
async def serving_gateway(
    home: Path, logs: Path, *, name: str = "gateway", **overrides: object
) -> AsyncIterator[Gateway]:
    """``running_gateway`` for async tests: the event loop keeps running while it starts."""
    settings = gateway_settings(home, **overrides)
    env = child_env(settings)
    server = await anyio.to_thread.run_sync(spawn, name, ["serve"], env, logs, free_port())
    try:
        await server.wait_ready_async("/status")
        schema = settings.get("database_schema")
        yield Gateway(
            server,
            home,
            env,
            str(settings["database_url"]),
            None if schema is None else str(schema),
        )
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(server.stop)


@asynccontextmanager
async def gateway_via_proxy(
    root: Path, schema: PostgresSchema, *, name: str, **overrides: object
) -> AsyncIterator[tuple[Gateway, TcpProxy]]:
    """A gateway on PostgreSQL (``schema``, migrated here) through a TCP proxy: stopping the
    proxy is a database outage for that gateway only."""
    await schema.migrate()
    async with anyio.create_task_group() as tasks:
        proxy = await start_tcp_proxy(tasks, POSTGRES_PORT)
        async with serving_gateway(
            root / "home",
            root / "logs",
            name=name,
            database_url=f"postgresql+asyncpg://postgres@127.0.0.1:{proxy.port}/test",
            database_schema=schema.name,
            master_key=generate_master_key(),
            **overrides,
        ) as gateway:
            yield gateway, proxy
        tasks.cancel_scope.cancel()


@dataclass
class Servers:
    fake: Fake
    slow_fake: Fake
    gateway: Gateway


def spawn_fake(name: str, logs: Path, *options: str) -> Server:
    """``orchestra fake-openai OPTIONS`` on a free port (not waited for)."""
    return spawn(name, ["fake-openai", *options], child_env({}), logs, free_port())


def spawn_gateway(name: str, settings: Mapping[str, object], logs: Path) -> Server:
    """``orchestra serve`` with ``settings`` on a free port (not waited for)."""
    return spawn(name, ["serve"], child_env(settings), logs, free_port())


def init_home(home: Path, **settings: object) -> None:
    """`orchestra init` in ``home``: a master key, a migrated SQLite database."""
    run_cli(["init"], child_env({"home": home, **settings}))


@contextmanager
def start_servers(root: Path, **overrides: Any) -> Iterator[Servers]:
    """The fast and slow fakes and a gateway (``gateway_settings`` + ``overrides``), ready."""
    logs, home = root / "logs", root / "home"
    with stopping() as fakes:
        fast = spawn_fake("fake", logs, "--tokens", str(FAST_FAKE_TOKENS))
        slow = spawn_fake("slow-fake", logs, "--token-ms", str(SLOW_FAKE_TOKEN_MS))
        fakes += [fast, slow]
        init_home(home)
        with running_gateway(home, logs, **overrides) as gateway:
            wait_http(fakes, "/_fake/health")
            yield Servers(Fake(fast), Fake(slow), gateway)


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    with start_servers(tmp_path_factory.mktemp("http")) as started:
        yield started


@pytest.fixture(scope="session")
def gateway(servers: Servers) -> Gateway:
    return servers.gateway


@pytest.fixture(scope="session")
def fake(servers: Servers) -> Fake:
    """A fake answering FAST_FAKE_TOKENS tokens with no delay."""
    return servers.fake


@pytest.fixture(scope="session")
def slow_fake(servers: Servers) -> Fake:
    """A fake sending one token every SLOW_FAKE_TOKEN_MS (50 tokens by default)."""
    return servers.slow_fake


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """Session-wide, so that module-scoped async fixtures can share registered apps."""
    return "asyncio"


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with gateway.client() as http:
        yield http


# --- apps -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def issued_secrets() -> set[str]:
    """Every client token and provider key handed out in this session (for the leak test)."""
    return {ADMIN_TOKEN}


@pytest.fixture
def apps(
    request: pytest.FixtureRequest, gateway: Gateway, fake: Fake, issued_secrets: set[str]
) -> Apps:
    prefix = slug(request.node.name.removeprefix("test_")) or "app"
    return Apps(gateway, fake, issued_secrets, prefix)


# --- reading responses ----------------------------------------------------------------------


# --- waiting --------------------------------------------------------------------------------


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


async def get_logs(
    client: httpx.AsyncClient, token: str, **params: str | int
) -> list[dict[str, Any]]:
    response = await client.get(
        "/logs", params=params, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200, response.text
    records: list[dict[str, Any]] = response.json()["records"]
    return records


async def wait_for_records(
    client: httpx.AsyncClient,
    request_ids: list[str],
    *,
    token: str = ADMIN_TOKEN,
    timeout: float = WAIT_TIMEOUT_S,
    **params: str | int,
) -> list[dict[str, Any]]:
    """Poll /logs until a record exists for every one of ``request_ids``; all records seen."""
    params.setdefault("limit", 1000)
    wanted = set(request_ids)
    return await poll(
        lambda: get_logs(client, token, **params),
        lambda records: wanted <= {r["request_id"] for r in records},
        timeout=timeout,
    )


#: Makes AsyncOpenAI clients on the gateway's /v1 with a given key.
SDK = Callable[[str], openai.AsyncOpenAI]


@pytest.fixture
async def sdk(gateway: Gateway) -> AsyncIterator[SDK]:
    """Make AsyncOpenAI clients on the gateway's /v1 with a given key (closed at the end)."""
    clients: list[openai.AsyncOpenAI] = []

    def make(api_key: str) -> openai.AsyncOpenAI:
        client = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=f"{gateway.url}/v1",
            max_retries=0,
            timeout=10,
            http_client=openai.DefaultAsyncHttpxClient(verify=TLS),
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()
