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
import os
import re
import secrets
import socket
import ssl
import subprocess
import sys
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

from gateway.security.keyring import Keyring
from gateway.security.master_key import resolve_master_keys
from gateway.services import apps as app_service
from gateway.services import tokens as token_service
from gateway.storage.database import Database

T = TypeVar("T")

ORCHESTRA = Path(sys.executable).parent / "orchestra"
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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def child_env(settings: Mapping[str, object]) -> dict[str, str]:
    """A minimal environment: nothing of the developer's ORCHESTRA_* leaks into a child."""
    env = {"PATH": os.defpath, "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1"}
    env.update({f"ORCHESTRA_{name.upper()}": str(value) for name, value in settings.items()})
    return env


@dataclass
class Server:
    """A child process serving HTTP on ``url``; its stderr goes to ``stderr_path``."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    stderr_path: Path

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def _check_alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(
                f"{self.name} exited with {self.process.returncode}:\n{self.stderr()[-3000:]}"
            )

    async def wait_ready_async(self, path: str, *, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=1.0, verify=TLS) as http:
            while time.monotonic() < deadline:
                self._check_alive()
                try:
                    if (await http.get(f"{self.url}{path}")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await anyio.sleep(0.05)
        raise RuntimeError(f"{self.name} did not answer {path} in {timeout} s:\n{self.stderr()}")

    def wait_ready(self, path: str, *, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=1.0, verify=TLS) as http:
            while time.monotonic() < deadline:
                self._check_alive()
                try:
                    if http.get(f"{self.url}{path}").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not answer {path} in {timeout} s:\n{self.stderr()}")


def spawn(name: str, args: list[str], env: Mapping[str, str], logs: Path, port: int) -> Server:
    logs.mkdir(parents=True, exist_ok=True)
    stdout_path, stderr_path = logs / f"{name}.out", logs / f"{name}.err"
    with stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            [str(ORCHESTRA), *args, "--port", str(port)],
            env=dict(env),
            stdout=stdout,
            stderr=stderr,
        )
    return Server(name, f"http://127.0.0.1:{port}", process, stderr_path)


def run_cli(args: list[str], env: Mapping[str, str]) -> str:
    """Run `orchestra ARGS` to completion (for session setup, outside any event loop)."""
    result = subprocess.run(
        [str(ORCHESTRA), *args],
        env=dict(env),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"orchestra {args}: {result.stdout!r} {result.stderr!r}"
    return result.stdout.decode()


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

    @property
    def url(self) -> str:
        return self.server.url

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        kwargs.setdefault("timeout", 10)
        kwargs.setdefault("verify", TLS)
        return httpx.AsyncClient(base_url=self.url, **kwargs)

    async def cli(self, *args: str) -> str:
        """Run `orchestra ARGS` against this gateway's database; its stdout."""
        result = await anyio.run_process([str(ORCHESTRA), *args], env=self.env, check=False)
        assert result.returncode == 0, f"orchestra {args}: {result.stdout!r} {result.stderr!r}"
        return result.stdout.decode()

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


@dataclass
class Servers:
    fake: Fake
    slow_fake: Fake
    gateway: Gateway


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    root = tmp_path_factory.mktemp("http")
    logs, home = root / "logs", root / "home"
    started: list[Server] = []
    try:
        fast = spawn(
            "fake",
            ["fake-openai", "--tokens", str(FAST_FAKE_TOKENS)],
            child_env({}),
            logs,
            free_port(),
        )
        started.append(fast)
        slow = spawn(
            "slow-fake",
            ["fake-openai", "--token-ms", str(SLOW_FAKE_TOKEN_MS)],
            child_env({}),
            logs,
            free_port(),
        )
        started.append(slow)
        run_cli(["init"], child_env({"home": home}))
        with running_gateway(home, logs) as gateway:
            for fake in (fast, slow):
                fake.wait_ready("/_fake/health")
            yield Servers(Fake(fast), Fake(slow), gateway)
    finally:
        for server in started:
            server.stop()


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


@dataclass(frozen=True)
class SSEEvent:
    """One SSE block: an event (``name``, ``data``) or a comment (``name`` None)."""

    name: str | None
    data: str
    at: float  # time.perf_counter() when the block was complete
    id: int | None = None  # the `id:` field (every /ask event has one)

    @property
    def json(self) -> Any:
        return json.loads(self.data)

    @property
    def is_comment(self) -> bool:
        return self.name is None


def parse_block(block: str, at: float) -> SSEEvent:
    lines = block.split("\n")
    if all(line.startswith(":") for line in lines):
        return SSEEvent(None, "\n".join(line[1:].strip() for line in lines), at)
    name: str | None = None
    event_id: int | None = None
    data: list[str] = []
    for line in lines:
        if line.startswith("id: "):
            assert event_id is None, block
            event_id = int(line.removeprefix("id: "))
        elif line.startswith("event: "):
            assert name is None, block
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            data.append(line.removeprefix("data: "))
        else:
            raise AssertionError(f"unexpected SSE line {line!r} in {block!r}")
    assert name is not None and data, block
    return SSEEvent(name, "\n".join(data), at, event_id)


async def sse_events(response: httpx.Response) -> AsyncIterator[SSEEvent]:
    """The blocks of an SSE body as they arrive, with their arrival time; exact framing."""
    buffer = ""
    async for text in response.aiter_text():
        buffer += text
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            yield parse_block(block, time.perf_counter())
    assert buffer == "", f"bytes after the last event: {buffer!r}"


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


async def poll(
    get: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    *,
    timeout: float = WAIT_TIMEOUT_S,
    interval: float = 0.02,
) -> T:
    """Call ``get`` until ``done(result)``; the last result, or AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = await get()
        if done(result):
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"still not there after {timeout} s: {result!r}")
        await anyio.sleep(interval)


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
