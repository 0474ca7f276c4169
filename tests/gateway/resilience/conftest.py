"""The fault suite's real processes: two OpenAI fakes and one gateway tuned for failure.

``r_gateway`` is an ``orchestra serve`` with retries, a circuit breaker, short timeouts and
small limits (``SETTINGS``), its master key planted through ORCHESTRA_MASTER_KEY (the canary
scan looks for it). Tests that would disturb it (SIGTERM, a database outage) start their own.

Circuit breakers are per gateway process and per base URL: tests that provoke upstream
failures on purpose use the ``flaky`` fake or a raw server of their own, never ``fake``, so that
an open circuit cannot leak into another test.

Helpers from tests/gateway/http/conftest.py are imported, not its fixtures.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import time
import warnings
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from click.testing import CliRunner

from gateway.security.keyring import generate_master_key
from gateway.services.views import QuotaLimits
from tests.gateway.http.conftest import (
    AppHandle,
    Fake,
    Gateway,
    SSEEvent,
    init_home,
    poll,
    running_gateway,
    spawn_fake,
)
from tests.gateway.upstream.raw_server import FOLLOWUP_PROMPT
from tests.support.apps import Apps
from tests.support.cli import click_command
from tests.support.processes import stopping, wait_http
from tests.support.sse import read_until_cut

MASTER_KEY = generate_master_key()
FIRST_TOKEN_TIMEOUT_S = 1.5
IDLE_TIMEOUT_S = 1.0
ATTEMPTS = 3
RETRY_DEADLINE_S = 4.0
CIRCUIT_THRESHOLD = 3
CIRCUIT_COOLDOWN_S = 1.0
MAX_BODY_BYTES = 16_384
MAX_PROMPT_CHARS = 2_000
MAX_MESSAGES = 8
MAX_METADATA_BYTES = 256
FAKE_TOKENS = 8

#: The resilience gateway's settings, on top of tests/gateway/http's gateway_settings().
SETTINGS: dict[str, object] = {
    "upstream_attempts": ATTEMPTS,
    "upstream_retry_deadline_s": RETRY_DEADLINE_S,
    "circuit_failure_threshold": CIRCUIT_THRESHOLD,
    "circuit_cooldown_s": CIRCUIT_COOLDOWN_S,
    "first_token_timeout_s": FIRST_TOKEN_TIMEOUT_S,
    "idle_timeout_s": IDLE_TIMEOUT_S,
    "connect_timeout_s": 1.0,
    "max_body_bytes": MAX_BODY_BYTES,
    "max_prompt_chars": MAX_PROMPT_CHARS,
    "max_messages": MAX_MESSAGES,
    "max_metadata_bytes": MAX_METADATA_BYTES,
    "master_key": MASTER_KEY,
}

#: For the quota checks: a reservation is prompt + max_output_tokens (about 110 tokens), so a
#: second one fits in TPM only if the first was released and settled at what was used.
QUOTA_MAX_OUTPUT = 100
QUOTA_TPM = 150

#: Every client token and provider key handed out by Tenants in this session (the canary scan
#: looks for all of them, not only its own).
ISSUED: set[str] = set()

SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-resource-policy": "same-site",
}


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """Session-wide, so that session-scoped fixtures and tests share one backend."""
    return "asyncio"


# --- processes ------------------------------------------------------------------------------


@dataclass
class Processes:
    fake: Fake
    flaky: Fake
    gateway: Gateway
    logs: Path


@pytest.fixture(scope="session")
def processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Processes]:
    root = tmp_path_factory.mktemp("resilience")
    logs, home = root / "logs", root / "home"
    with stopping() as fakes:
        fakes += [spawn_fake(n, logs, "--tokens", str(FAKE_TOKENS)) for n in ("r-fake", "r-flaky")]
        init_home(home, master_key=MASTER_KEY)
        with running_gateway(home, logs, name="r-gateway", **SETTINGS) as gateway:
            wait_http(fakes, "/_fake/health")
            yield Processes(Fake(fakes[0]), Fake(fakes[1]), gateway, logs)


@pytest.fixture(scope="session")
async def r_gateway(processes: Processes) -> Gateway:
    """The resilience gateway, warmed up: the first workflow run is slow (graphs, tables)."""
    gateway = processes.gateway
    warm = Tenants(gateway, processes.fake, "warm-up")
    app = await warm.add(workflow="conversation")
    async with gateway.client(timeout=30) as http:
        for body in ({"prompt": "warm up"}, {"prompt": "warm up", "conversation_id": "warm"}):
            for _ in range(3):
                ended = await call(http, app, body)
                if ended.status == 200:
                    break
    return gateway


@pytest.fixture(scope="session")
def fake(processes: Processes) -> Fake:
    """The well-behaved fake: never made to fail in a way that counts for a circuit."""
    return processes.fake


@pytest.fixture(scope="session")
def flaky(processes: Processes) -> Fake:
    """The fake for 429 storms and 5xx: its circuit on r_gateway may open."""
    return processes.flaky


@pytest.fixture
async def client(r_gateway: Gateway) -> Any:
    async with r_gateway.client(timeout=15) as http:
        yield http


# --- apps -----------------------------------------------------------------------------------


@dataclass
class Tenants:
    """``Apps`` with this suite's defaults: a quota brings a small ``max_output_tokens``, and
    every secret handed out is also recorded in ISSUED (for the canary scan)."""

    gateway: Gateway
    default_fake: Fake | None
    prefix: str
    secrets: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._apps = Apps(self.gateway, self.default_fake, self.secrets, self.prefix)

    async def add(
        self,
        fake: Fake | None = None,
        *,
        quota: QuotaLimits | None = None,
        max_output_tokens: int | None = None,
        provider_key: str | None = None,
        **options: Any,
    ) -> AppHandle:
        if quota is not None and max_output_tokens is None:
            max_output_tokens = QUOTA_MAX_OUTPUT
        app = await self._apps.add(
            fake,
            quota=quota,
            max_output_tokens=max_output_tokens,
            provider_key=provider_key or "",
            **options,
        )
        ISSUED.update(self.secrets)
        return app


def _slug(node: pytest.Item | Any) -> str:
    name = node.name.removeprefix("test_")
    return "".join(c if c.isalnum() else "-" for c in name.lower())[:24].strip("-") or "app"


@pytest.fixture
def tenants(request: pytest.FixtureRequest, r_gateway: Gateway, fake: Fake) -> Tenants:
    return Tenants(r_gateway, fake, _slug(request.node))


def quota_limits() -> QuotaLimits:
    return QuotaLimits(tpm=QUOTA_TPM, max_concurrent=1)


# --- calling and reading --------------------------------------------------------------------


@dataclass
class Ended:
    """How one call ended, as the client saw it."""

    status: int
    headers: httpx.Headers
    events: list[SSEEvent]
    body: Any
    elapsed: float
    #: The SSE body stopped without a complete last block or the connection broke.
    cut: str | None = None

    @property
    def request_id(self) -> str:
        return self.headers["x-request-id"]

    @property
    def is_sse(self) -> bool:
        return str(self.headers.get("content-type", "")).startswith("text/event-stream")

    @property
    def names(self) -> list[str | None]:
        return [e.name for e in self.events if not e.is_comment]

    @property
    def last(self) -> SSEEvent:
        named = [e for e in self.events if not e.is_comment]
        assert named, self
        return named[-1]

    @property
    def deltas(self) -> list[SSEEvent]:
        return [e for e in self.events if e.name == "delta"]

    def error_code(self) -> str:
        if self.is_sse:
            assert self.last.name == "error", self
            return str(self.last.json["code"])
        return str(self.body["error"]["code"])

    def assert_typed_end(self) -> str:
        """A done event, an error event, a JSON answer or a JSON error: never a silent end."""
        assert self.cut is None, f"the stream was cut: {self.cut}"
        if self.is_sse:
            assert self.status == 200
            assert self.names and self.names[-1] in ("done", "error"), self.names
            assert self.names.count("done") + self.names.count("error") == 1, self.names
            if self.last.name == "error":
                error = self.last.json
                scoped = {"scope"} if error.get("code") == "quota_exceeded" else set()
                assert set(error) == {"code", "message", "request_id", *scoped}, error
                assert error["request_id"] == self.request_id
                return f"error:{error['code']}"
            return "done"
        if self.status == 200:  # a whole JSON answer
            assert isinstance(self.body, dict) and ("text" in self.body or "choices" in self.body)
            return "json"
        assert self.status >= 400, (self.status, self.body)
        assert isinstance(self.body, dict) and "error" in self.body, self.body
        assert self.body["error"]["code"], self.body
        assert "Traceback" not in json.dumps(self.body)
        return f"http:{self.status}:{self.body['error']['code']}"


async def call(
    client: httpx.AsyncClient,
    app: AppHandle | None,
    body: Any,
    *,
    path: str = "/ask",
    headers: Mapping[str, str] | None = None,
    token: str | None = None,
) -> Ended:
    """POST ``body`` and read the whole answer, SSE or JSON, tolerating a cut connection."""
    auth = {} if app is None else app.auth
    if token is not None:
        auth = {"Authorization": f"Bearer {token}"}
    started = time.perf_counter()
    events: list[SSEEvent] = []
    cut: str | None = None
    async with client.stream(
        "POST", path, json=body, headers={**auth, **(headers or {})}
    ) as response:
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            events, cut = await read_until_cut(response)
            payload: Any = None
        else:
            await response.aread()
            try:
                payload = response.json()
            except ValueError:
                payload = response.text
    return Ended(
        response.status_code,
        response.headers,
        events,
        payload,
        time.perf_counter() - started,
        cut,
    )


async def app_records(client: httpx.AsyncClient, app: AppHandle) -> list[dict[str, Any]]:
    response = await client.get("/logs", params={"limit": 1000}, headers=app.auth)
    assert response.status_code == 200, response.text
    records: list[dict[str, Any]] = response.json()["records"]
    return records


async def record_of(
    client: httpx.AsyncClient, app: AppHandle, request_id: str, *, timeout: float = 5.0
) -> dict[str, Any]:
    """The one interaction record of ``request_id`` (waits for the batch writer)."""
    records = await poll(
        lambda: app_records(client, app),
        lambda rs: any(r["request_id"] == request_id for r in rs),
        timeout=timeout,
    )
    found = [r for r in records if r["request_id"] == request_id]
    assert len(found) == 1, found
    return found[0]


async def assert_reservation_released(client: httpx.AsyncClient, app: AppHandle) -> None:
    """The app (max_concurrent 1, a TPM that holds one reservation) can still be served."""
    followup = await call(client, app, {"prompt": FOLLOWUP_PROMPT})
    assert followup.status == 200, (followup.status, followup.body)
    assert followup.assert_typed_end() == "done", followup.events


def assert_security_headers(response: httpx.Response | Ended) -> None:
    headers = response.headers
    for name, value in SECURITY_HEADERS.items():
        assert headers.get(name) == value, (name, dict(headers))
    assert headers.get("x-request-id"), dict(headers)


async def circuits(client: httpx.AsyncClient) -> dict[str, str]:
    body = (await client.get("/status")).json()
    found: dict[str, str] = body["circuits"]
    return found


# --- databases ------------------------------------------------------------------------------


def sqlite_rows(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of a SQLite database, read-only."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [
            row[0]
            for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        ]
        return {t: connection.execute(f'SELECT * FROM "{t}"').fetchall() for t in tables}  # noqa: S608
    finally:
        connection.close()


def request_ids_in(path: Path) -> list[str]:
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [row[0] for row in connection.execute("SELECT request_id FROM request_logs")]
    finally:
        connection.close()


# --- the CLI, in-process --------------------------------------------------------------------


@dataclass
class CliRun:
    code: int
    out: str
    err: str


def orchestra_cli(
    gateway: Gateway, *args: str, input: str | None = None, **settings: str
) -> CliRun:
    """`orchestra ARGS` in this process (a child would cost seconds of imports), against
    ``gateway``'s home and database; ``settings`` are extra ORCHESTRA_* values.

    It runs in a thread of its own: the CLI starts its own event loop, and the thread of the
    tests may have one running (session-scoped async fixtures).
    """
    env = {k: v for k, v in gateway.env.items() if k.startswith("ORCHESTRA_")}
    env.update({f"ORCHESTRA_{k.upper()}": v for k, v in settings.items()})

    def invoke() -> Any:
        with warnings.catch_warnings():
            # sqlmodel's nudge towards session.exec() (as in tests/cli/test_usage.py).
            warnings.filterwarnings(
                "ignore", message=r"\s*.*session\.exec\(\)", category=DeprecationWarning
            )
            return CliRunner().invoke(click_command(), list(args), input=input, env=env)

    with ThreadPoolExecutor(max_workers=1) as pool:
        result = pool.submit(invoke).result(timeout=60)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return CliRun(result.exit_code, result.stdout, result.stderr)


async def acli(gateway: Gateway, *args: str, input: str | None = None, **settings: str) -> CliRun:
    """``orchestra_cli`` from async code (in a worker thread: the CLI runs its own loop)."""
    return await anyio.to_thread.run_sync(
        functools.partial(orchestra_cli, gateway, *args, input=input, **settings)
    )
