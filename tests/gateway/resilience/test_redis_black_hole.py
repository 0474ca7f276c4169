"""A Redis that accepts connections and never answers costs a quota'd request a short timeout.

Reproduces issue #21: with such a Redis every quota'd request took 2.0 s (the client's fixed
socket timeout) before the fail policy applied. Here `orchestra serve` (default settings:
``redis_timeout_s`` 0.25) points at a TCP server that accepts and stays silent; a request-rate
limit fails open (answered), a token limit fails closed (503 quota_unavailable), both well
within 1.5 s (a bound on the behaviour, generous for a loaded machine, not a benchmark).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from gateway.services.views import QuotaLimits
from tests.gateway.http.conftest import (
    START_TIMEOUT_S,
    TLS,
    Fake,
    Gateway,
    child_env,
    free_port,
    gateway_settings,
    spawn,
)
from tests.gateway.resilience.conftest import MASTER_KEY, Tenants, call, init_home

pytestmark = pytest.mark.anyio

#: What "at once" means here: the timeout (0.25 s) plus an answer, with room for a busy machine.
BOUND_S = 1.5


class BlackHole:
    """A TCP server that accepts every connection and never reads or answers."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.port: int = self._listener.getsockname()[1]
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return  # closed
            self._held.append(connection)

    def close(self) -> None:
        self._listener.close()
        for connection in self._held:
            connection.close()


@dataclass
class Setup:
    gateway: Gateway
    tenants: Tenants


def _wait_answering(gateway: Gateway) -> None:
    """Until /status answers at all (503 degraded: Redis is down)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    with httpx.Client(timeout=5.0, verify=TLS) as http:
        while time.monotonic() < deadline:
            assert gateway.server.process.poll() is None, gateway.server.stderr()[-3000:]
            try:
                http.get(f"{gateway.url}/status")
                return
            except httpx.TransportError:
                time.sleep(0.05)
    raise AssertionError(f"the gateway did not answer:\n{gateway.server.stderr()[-3000:]}")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    root = tmp_path_factory.mktemp("redis-black-hole")
    logs, home = root / "logs", root / "home"
    hole = BlackHole()
    fake_server = spawn(
        "bh-fake", ["fake-openai", "--tokens", "4"], child_env({}), logs, free_port()
    )
    try:
        init_home(home, master_key=MASTER_KEY)
        settings = gateway_settings(
            home, master_key=MASTER_KEY, redis_url=f"redis://127.0.0.1:{hole.port}/0"
        )
        env = child_env(settings)
        server = spawn("bh-gateway", ["serve"], env, logs, free_port())
        try:
            gateway = Gateway(server, home, env, f"sqlite+aiosqlite:///{home}/orchestra.db")
            _wait_answering(gateway)
            fake_server.wait_ready("/_fake/health")
            yield Setup(gateway, Tenants(gateway, Fake(fake_server), "black-hole"))
        finally:
            server.stop()
    finally:
        fake_server.stop()
        hole.close()


async def test_a_request_rate_limit_fails_open_at_once(setup: Setup) -> None:
    app = await setup.tenants.add(quota=QuotaLimits(rpm=1000))
    async with setup.gateway.client(timeout=10) as client:
        for attempt in range(3):
            ended = await call(client, app, {"prompt": f"hello {attempt}"})
            assert ended.status == 200, (ended.status, ended.body)
            assert ended.assert_typed_end() == "done", ended.events
            assert ended.elapsed < BOUND_S, f"{ended.elapsed:.2f} s"


async def test_a_token_limit_fails_closed_at_once(setup: Setup) -> None:
    app = await setup.tenants.add(quota=QuotaLimits(tpm=100_000))
    async with setup.gateway.client(timeout=10) as client:
        for attempt in range(4):
            ended = await call(client, app, {"prompt": f"hello {attempt}"})
            assert ended.assert_typed_end() == "http:503:quota_unavailable", ended.body
            # The first token-limited request also loads the tokenizer (a one-off second).
            assert attempt == 0 or ended.elapsed < BOUND_S, f"{ended.elapsed:.2f} s"
