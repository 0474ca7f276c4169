"""Real replicas: three `orchestra serve` processes on one PostgreSQL schema and one Redis.

Nothing is simulated: the gateways are child processes on free ports, sharing a throw-away
schema of the machine's PostgreSQL (``test`` database) and database 12 of the machine's Redis
(flushed when the cluster starts and when it stops), in front of one ``orchestra fake-openai``.
There is no load balancer: a ``Spread`` of clients sends request ``i`` to replica ``i % 3``.

Apps are registered in-process through ``gateway.services`` (what `orchestra apps add` and
`orchestra quotas set` call), each with a unique name, so tests never share counters.

Every wait is bounded, and every process started here is terminated (then killed) in a
``finally``.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio
import httpx
import pytest
import redis

from gateway.security.keyring import Keyring, generate_master_key
from gateway.services import apps as app_service
from gateway.services import quotas as quota_service
from gateway.services.views import QuotaLimits
from gateway.storage.database import Database
from tests.support import cli, polling
from tests.support.databases import POSTGRES_URL, scratch_stores
from tests.support.processes import (
    ORCHESTRA,
    Proc,
    child_env,
    free_port,
    spawn,
    spawn_orchestra,
    wait_http,
    wait_http_async,
)

# Re-exported: tests/deploy builds its topology from them.
__all__ = [
    "ORCHESTRA",
    "POSTGRES_URL",
    "Proc",
    "child_env",
    "free_port",
    "spawn",
    "wait_http",
    "wait_http_async",
]

T = TypeVar("T")

REDIS_SERVER = "redis-server"
REDIS_URL = "redis://127.0.0.1:6379/12"
MODEL = "gpt-4o-mini"
REPLICAS = 3

#: A reservation's lease, short so that a dead replica's lease expires within the test.
RESERVATION_TTL_S = 3.0
ADMIN_TOKEN = "adm_" + secrets.token_urlsafe(24)
START_TIMEOUT_S = 60.0
WAIT_TIMEOUT_S = 10.0


# --- processes ------------------------------------------------------------------------------


def run_cli(args: Sequence[str], env: Mapping[str, str], *, timeout: float = 60) -> str:
    return cli.run_cli(args, env, timeout=timeout)


# --- a Redis server of our own --------------------------------------------------------------


@dataclass
class RedisServer:
    """A ``redis-server`` on a free port, without persistence, that a test may stop and restart
    (never the machine's Redis on 6379)."""

    port: int
    logs: Path
    proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert self.proc is None or not self.proc.alive()
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
        self.proc = spawn(f"redis-{self.port}", args, child_env({}), self.logs, self.port)
        deadline = time.monotonic() + WAIT_TIMEOUT_S
        while True:
            self.proc.check_alive()
            try:
                with redis.Redis(port=self.port, socket_timeout=1) as client:
                    if client.ping():
                        return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on {self.port} did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()


# --- the cluster ----------------------------------------------------------------------------


@dataclass(frozen=True)
class AppHandle:
    name: str
    id: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Cluster:
    fake: Proc
    gateways: list[Proc]
    schema: str
    master_key: str
    root: Path
    settings: dict[str, object]
    own_redis: RedisServer
    #: A fourth replica (same database and Redis), for the test that kills one.
    spare: Proc | None = None
    #: Two replicas on ``own_redis``, a redis-server the Redis-down test may stop.
    pair: list[Proc] = field(default_factory=list)
    count: int = field(default=0)

    @property
    def env(self) -> dict[str, str]:
        return child_env(self.settings)

    def gateway_env(self, **overrides: object) -> dict[str, str]:
        return child_env({**self.settings, **overrides})

    def spawn_gateway(self, name: str, **overrides: object) -> Proc:
        """Another replica on the same database (and Redis, unless overridden)."""
        port = free_port()
        args = [str(ORCHESTRA), "serve", "--port", str(port)]
        return spawn(name, args, self.gateway_env(**overrides), self.root / "logs", port)

    def unique_name(self, label: str) -> str:
        self.count += 1
        return f"{label}-{self.count}-{secrets.token_hex(3)}"

    async def with_database(self, work: Callable[[Database], Awaitable[T]]) -> T:
        db = Database.open(POSTGRES_URL, schema=self.schema, pool_size=2)
        try:
            return await work(db)
        finally:
            await db.close()

    async def add_app(
        self, label: str, quota: QuotaLimits | None = None, *, max_output_tokens: int = 256
    ) -> AppHandle:
        """A new app on the fake, with a provider key, a token and (optionally) limits."""
        name = self.unique_name(label)
        keyring = Keyring([self.master_key])

        async def register(db: Database) -> AppHandle:
            registered = await app_service.register_app(
                db,
                keyring,
                name=name,
                changes=app_service.AppChanges(
                    base_url=f"{self.fake.url}/v1", max_output_tokens=max_output_tokens
                ),
                defaults=app_service.AppDefaults(
                    model=MODEL, base_url=f"{self.fake.url}/v1", max_output_tokens=1024
                ),
                provider_key=f"sk-test-{secrets.token_hex(12)}",
            )
            if quota is not None:
                await quota_service.set_quota(db, app_name=name, changes=quota)
            return AppHandle(name, registered.app.id, registered.token.secret)

        return await self.with_database(register)

    def spread(self, gateways: Sequence[Proc] | None = None) -> Spread:
        return Spread([g.url for g in (gateways or self.gateways)])


@pytest.fixture(scope="package")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The fake and three replicas, ready; a spare replica and a Redis-down pair, starting.

    Starting a gateway costs seconds of CPU: the spare ones start once the three are ready,
    while the first tests run, and the tests that use them wait for them.
    """
    root = tmp_path_factory.mktemp("replicas")
    with scratch_stores(REDIS_URL) as schema:
        yield from _start_cluster(root, schema)


def _start_cluster(root: Path, schema: str) -> Iterator[Cluster]:
    logs = root / "logs"
    master_key = generate_master_key()
    settings: dict[str, object] = {
        "home": root / "home",
        "database_url": POSTGRES_URL,
        "database_schema": schema,
        "master_key": master_key,
        "redis_url": REDIS_URL,
        "reservation_ttl_s": RESERVATION_TTL_S,
        "admin_token": ADMIN_TOKEN,
        "log_flush_interval_s": 0.05,
        "auth_cache_ttl_s": 0.5,
        "log_format": "json",
    }
    procs: list[Proc] = []
    own_redis = RedisServer(free_port(), logs)
    try:
        run_cli(["init"], child_env(settings))
        fake = spawn_orchestra("fake", ["fake-openai", "--tokens", "8"], child_env({}), logs)
        procs.append(fake)
        own_redis.start()
        cluster = Cluster(fake, [], schema, master_key, root, settings, own_redis=own_redis)
        # The first replica alone, then the others: replicas that start together on a fresh
        # schema can deadlock in the workflow checkpointer's set-up (gateway/flows/
        # checkpoints.py: pg_advisory_lock around CREATE INDEX CONCURRENTLY), which is not
        # what these tests are about.
        first = cluster.spawn_gateway("gateway-0")
        cluster.gateways.append(first)
        procs.append(first)
        wait_http([first], "/status")
        for i in range(1, REPLICAS):
            cluster.gateways.append(cluster.spawn_gateway(f"gateway-{i}"))
        procs += cluster.gateways[1:]
        wait_http([fake], "/_fake/health")
        wait_http(cluster.gateways, "/status")
        # The others start while the first tests run.
        cluster.spare = cluster.spawn_gateway("spare")
        cluster.pair = [
            cluster.spawn_gateway(f"own-redis-{i}", redis_url=own_redis.url) for i in range(2)
        ]
        procs += [cluster.spare, *cluster.pair]
        yield cluster
    finally:
        for proc in procs:
            proc.stop()
        own_redis.stop()


# --- clients --------------------------------------------------------------------------------


class Spread:
    """One HTTP client per replica; ``next()`` hands them out round-robin (no load balancer)."""

    def __init__(self, urls: Sequence[str]) -> None:
        self.urls = list(urls)
        self._turn = 0
        self.clients: list[httpx.AsyncClient] = []

    async def __aenter__(self) -> Spread:
        limits = httpx.Limits(max_connections=400, max_keepalive_connections=100)
        self.clients = [
            httpx.AsyncClient(base_url=url, timeout=30, limits=limits) for url in self.urls
        ]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for client in self.clients:
            await client.aclose()

    def next(self) -> httpx.AsyncClient:
        client = self.clients[self._turn % len(self.clients)]
        self._turn += 1
        return client


@dataclass
class Outcome:
    """One /ask call: its status, headers, and for a stream its SSE events."""

    status: int
    headers: httpx.Headers
    body: Any = None  # JSON body (errors, non-streamed answers)
    events: list[tuple[str, Any]] = field(default_factory=list)  # (event, data) of a stream
    replica: str = ""

    @property
    def event_names(self) -> list[str]:
        return [name for name, _ in self.events]

    @property
    def error_code(self) -> str | None:
        if self.body and isinstance(self.body, dict) and "error" in self.body:
            return str(self.body["error"]["code"])
        for name, data in self.events:
            if name == "error":
                return str(data.get("code"))
        return None

    @property
    def request_id(self) -> str:
        return str(self.headers.get("x-request-id", ""))


def _sse(text: str) -> list[tuple[str, Any]]:
    events: list[tuple[str, Any]] = []
    for block in text.split("\n\n"):
        lines = [line for line in block.split("\n") if line and not line.startswith(":")]
        if not lines:
            continue
        name = next((ln[7:] for ln in lines if ln.startswith("event: ")), "message")
        data = "\n".join(ln[6:] for ln in lines if ln.startswith("data: "))
        events.append((name, json.loads(data) if data else None))
    return events


async def ask(
    client: httpx.AsyncClient,
    app: AppHandle,
    prompt: str,
    *,
    stream: bool = True,
    max_tokens: int | None = None,
    on_first_delta: Callable[[], Awaitable[None]] | None = None,
) -> Outcome:
    """POST /ask and read the whole answer (a JSON body, or every SSE event)."""
    body: dict[str, Any] = {"prompt": prompt, "stream": stream}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    async with client.stream("POST", "/ask", json=body, headers=app.auth) as response:
        replica = str(client.base_url)
        kind = response.headers.get("content-type", "")
        if not kind.startswith("text/event-stream"):
            await response.aread()
            return Outcome(response.status_code, response.headers, response.json(), [], replica)
        text = ""
        notified = False
        async for chunk in response.aiter_text():
            text += chunk
            if on_first_delta is not None and not notified and "event: delta" in text:
                notified = True
                await on_first_delta()
        return Outcome(response.status_code, response.headers, None, _sse(text), replica)


async def gather(calls: Sequence[Awaitable[Outcome]]) -> list[Outcome]:
    """Run the coroutines concurrently; their outcomes in order."""
    results: list[Outcome | None] = [None] * len(calls)

    async def one(i: int, call: Awaitable[Outcome]) -> None:
        results[i] = await call

    async with anyio.create_task_group() as tasks:
        for i, call in enumerate(calls):
            tasks.start_soon(one, i, call)
    return [r for r in results if r is not None]


async def poll(
    get: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    *,
    timeout: float = WAIT_TIMEOUT_S,
    interval: float = 0.05,
) -> T:
    """``tests.support.polling.poll`` with this folder's longer wait."""
    return await polling.poll(get, done, timeout=timeout, interval=interval)


async def records_of(
    client: httpx.AsyncClient, app: AppHandle, expected: int
) -> list[dict[str, Any]]:
    """The app's interaction records, once ``expected`` of them are written (any replica)."""

    async def get() -> list[dict[str, Any]]:
        response = await client.get(
            "/logs",
            params={"app": app.name, "limit": 1000},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
        assert response.status_code == 200, response.text
        records: list[dict[str, Any]] = response.json()["records"]
        return records

    return await poll(get, lambda rs: len(rs) >= expected)


async def fake_requests(cluster: Cluster, marker: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(f"{cluster.fake.url}/_fake/requests")
    response.raise_for_status()
    return [r for r in response.json() if marker in json.dumps(r["body"])]


@pytest.fixture
async def spread(cluster: Cluster) -> AsyncIterator[Spread]:
    async with cluster.spread() as clients:
        yield clients
