"""Real servers for the HTTP tests: two OpenAI fakes and one gateway, as child processes.

Everything here talks over real sockets: ``orchestra fake-openai`` and ``orchestra serve`` run as
subprocesses on free ports (started once per session), the tests use httpx and the official
``openai`` SDK as clients. Apps are registered in-process through ``gateway.services`` on the
gateway's own database, each with a unique name, so tests never see each other's apps.

The gateway runs with short timeouts (constants below) so that timeout paths take about a
second, and its stderr (JSON logs) is captured to a file that the secret-leak test reads.
"""

from __future__ import annotations

import json
import re
import secrets
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import anyio
import httpx
import openai
import pytest
from pydantic import SecretStr

from gateway.security.keyring import Keyring, generate_master_key
from gateway.security.master_key import resolve_master_keys
from gateway.services import apps as app_service
from gateway.services import tokens as token_service
from gateway.storage.database import Database
from tests.support import processes
from tests.support.cli import run_cli, run_cli_async
from tests.support.databases import POSTGRES_PORT, PostgresSchema
from tests.support.polling import poll
from tests.support.processes import ORCHESTRA, Proc, child_env, free_port, stopping, wait_http
from tests.support.sse import SSEEvent, parse_block, sse_events
from tests.support.tcp_proxy import TcpProxy, start_tcp_proxy

# Re-exported: the tests of several folders import them from here.
__all__ = [
    "ORCHESTRA",
    "SSEEvent",
    "child_env",
    "free_port",
    "parse_block",
    "poll",
    "run_cli",
    "sse_events",
]

T = TypeVar("T")

MODEL = "gpt-4o-mini"

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

# Every server here is plain HTTP; building an SSL context per client costs ~45 ms of CPU.
TLS = ssl.create_default_context()

_TRACEBACK = re.compile(r"Traceback \(most recent call last\)|File \"[^\"]+\", line \d+")


# --- processes ------------------------------------------------------------------------------

#: The suite's gateways and fakes (tests/support/processes.py); stdout apart from the JSON logs.
Server = Proc


def spawn(name: str, args: list[str], env: Mapping[str, str], logs: Path, port: int) -> Server:
    """``orchestra ARGS --port PORT``, its stderr (JSON logs) in ``logs/NAME.err``."""
    argv = [str(ORCHESTRA), *args, "--port", str(port)]
    return processes.spawn(name, argv, env, logs, port, stdout_apart=True)


# --- the fakes and the gateway --------------------------------------------------------------


@dataclass
class Fake:
    server: Server

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def base_url(self) -> str:
        return f"{self.server.url}/v1"

    async def requests(self) -> list[dict[str, Any]]:
        """What the fake received (``GET /_fake/requests``), oldest first."""
        async with httpx.AsyncClient(timeout=5, verify=TLS) as client:
            response = await client.get(f"{self.url}/_fake/requests")
        response.raise_for_status()
        records: list[dict[str, Any]] = response.json()
        return records

    async def requests_with(self, marker: str) -> list[dict[str, Any]]:
        """The received chat requests whose messages contain ``marker``."""
        return [r for r in await self.requests() if marker in json.dumps(r["body"])]

    async def request_with(self, marker: str) -> dict[str, Any]:
        """The one chat request whose messages contain ``marker`` (waits for it briefly)."""
        found = await poll(lambda: self.requests_with(marker), lambda rs: len(rs) > 0)
        assert len(found) == 1, found
        return found[0]


@dataclass
class Gateway:
    server: Server
    home: Path
    env: dict[str, str]
    database_url: str
    database_schema: str | None = None

    @classmethod
    def on_sqlite(cls, server: Server, home: Path, settings: Mapping[str, object]) -> Gateway:
        """A gateway started with ``settings`` on the SQLite database of ``home``."""
        database_url = f"sqlite+aiosqlite:///{home}/orchestra.db"
        return cls(server, home, child_env(settings), database_url)

    @property
    def url(self) -> str:
        return self.server.url

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        kwargs.setdefault("timeout", 10)
        kwargs.setdefault("verify", TLS)
        return httpx.AsyncClient(base_url=self.url, **kwargs)

    async def cli(self, *args: str) -> str:
        """Run `orchestra ARGS` against this gateway's database; its stdout."""
        return await run_cli_async(args, self.env)

    async def with_database(self, work: Callable[[Database], Awaitable[T]]) -> T:
        db = Database.open(self.database_url, schema=self.database_schema, pool_size=2)
        try:
            return await work(db)
        finally:
            await db.close()

    def keyring(self) -> Keyring:
        configured = self.env.get("ORCHESTRA_MASTER_KEY")
        secret = None if configured is None else SecretStr(configured)
        return Keyring(resolve_master_keys(secret, self.home / "master.key"))


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
def start_servers(root: Path, **overrides: object) -> Iterator[Servers]:
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


@dataclass(frozen=True)
class AppHandle:
    name: str
    id: str
    token: str
    token_id: str
    provider_key: str | None

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture(scope="session")
def issued_secrets() -> set[str]:
    """Every client token and provider key handed out in this session (for the leak test)."""
    return {ADMIN_TOKEN}


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40].strip("-")


@dataclass
class Apps:
    """Registers apps on the session gateway's database, in-process through the services."""

    gateway: Gateway
    default_fake: Fake | None
    secrets: set[str]
    prefix: str
    count: int = field(default=0)

    def unique_name(self) -> str:
        self.count += 1
        return f"{self.prefix}-{self.count}-{secrets.token_hex(3)}"

    async def add(
        self,
        fake: Fake | None = None,
        *,
        base_url: str | None = None,
        origins: tuple[str, ...] = (),
        model: str | None = None,
        allow_models: tuple[str, ...] = (),
        system_prompt: str | None = None,
        max_output_tokens: int | None = None,
        log_content: str | None = None,
        provider_key: str | None = "",
    ) -> AppHandle:
        """A new app on ``fake`` (or ``base_url``) with its own provider key and first token.

        ``provider_key=""`` (the default) generates a unique key; ``None`` stores none.
        """
        name = self.unique_name()
        fake = fake or self.default_fake
        if base_url is None:
            assert fake is not None, "an app needs a fake or a base_url"
            base_url = fake.base_url
        if provider_key == "":
            provider_key = f"sk-test-{secrets.token_hex(16)}"
        changes = app_service.AppChanges(
            origins=origins,
            model=model,
            allowed_models=allow_models,
            base_url=base_url,
            system_prompt=system_prompt,
            max_output_tokens=max_output_tokens,
            log_content=log_content,
        )
        defaults = app_service.AppDefaults(
            model=MODEL, base_url="http://127.0.0.1:9/v1", max_output_tokens=1024
        )
        keyring = self.gateway.keyring()
        registered = await self.gateway.with_database(
            lambda db: app_service.register_app(
                db,
                keyring,
                name=name,
                changes=changes,
                defaults=defaults,
                provider_key=provider_key,
            )
        )
        self.secrets.add(registered.token.secret)
        if provider_key is not None:
            self.secrets.add(provider_key)
        return AppHandle(
            name=name,
            id=registered.app.id,
            token=registered.token.secret,
            token_id=registered.token.info.id,
            provider_key=provider_key,
        )

    async def issue_token(
        self, app: AppHandle, *, expires_in: timedelta | None = None
    ) -> AppHandle:
        """The same app with another, new token."""
        issued = await self.gateway.with_database(
            lambda db: token_service.issue_token(
                db, app_name=app.name, label="test", expires_in=expires_in
            )
        )
        self.secrets.add(issued.secret)
        return AppHandle(app.name, app.id, issued.secret, issued.info.id, app.provider_key)

    async def revoke(self, app: AppHandle) -> None:
        await self.gateway.with_database(lambda db: token_service.revoke_token(db, app.token_id))

    async def set_disabled(self, app: AppHandle, *, disabled: bool) -> None:
        await self.gateway.with_database(
            lambda db: app_service.set_disabled(db, app.name, disabled=disabled)
        )


@pytest.fixture
def apps(
    request: pytest.FixtureRequest, gateway: Gateway, fake: Fake, issued_secrets: set[str]
) -> Apps:
    prefix = _slug(request.node.name.removeprefix("test_")) or "app"
    return Apps(gateway, fake, issued_secrets, prefix)


# --- reading responses ----------------------------------------------------------------------


@dataclass
class Streamed:
    response: httpx.Response
    blocks: list[SSEEvent]
    started: float

    @property
    def events(self) -> list[SSEEvent]:
        return [b for b in self.blocks if not b.is_comment]

    @property
    def names(self) -> list[str | None]:
        return [e.name for e in self.events]

    @property
    def text(self) -> str:
        return "".join(e.json["text"] for e in self.events if e.name == "delta")

    @property
    def request_id(self) -> str:
        return self.response.headers["x-request-id"]


async def ask_stream(
    client: httpx.AsyncClient,
    app: AppHandle,
    body: dict[str, Any],
    headers: Mapping[str, str] | None = None,
) -> Streamed:
    """POST /ask and read the whole SSE stream (asserts a 200 text/event-stream answer)."""
    started = time.perf_counter()
    async with client.stream(
        "POST", "/ask", json=body, headers={**app.auth, **(headers or {})}
    ) as r:
        if r.status_code != 200:
            await r.aread()
            raise AssertionError(f"/ask answered {r.status_code}: {r.text}")
        assert r.headers["content-type"].startswith("text/event-stream"), r.headers
        blocks = [block async for block in sse_events(r)]
    for block in blocks:
        assert_no_traceback(block.data)
    return Streamed(r, blocks, started)


def assert_no_traceback(text: str) -> None:
    assert not _TRACEBACK.search(text), text
    assert "Traceback" not in text, text


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """A JSON error in the gateway's shape, with this status and code; its ``error`` object."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json"), response.headers
    assert_no_traceback(response.text)
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    # A quota refusal says whose limit it was: the app's (everyone's) or this user's.
    scoped = {"scope"} if code == "quota_exceeded" else set()
    assert set(error) == {"code", "message", "request_id", *scoped}, error
    assert error.get("scope", "app") in ("app", "user"), error
    assert error["code"] == code, error
    assert error["message"], error
    assert error["request_id"] == response.headers["x-request-id"], (error, response.headers)
    return error


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
