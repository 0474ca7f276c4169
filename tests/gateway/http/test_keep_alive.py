"""`orchestra serve` and idle keep-alive connections: closed after keep_alive_s, and on SIGTERM
left open for a request their client has just written (answered, then closed).

The protocol-level tests, on both uvicorn implementations, are
tests/gateway/server/test_protocols.py; the topology test (nginx, a replica stopped under
traffic) is tests/deploy/test_topology.py.
"""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gateway.http.conftest import Gateway, running_gateway
from tests.gateway.resilience.conftest import init_home
from tests.support.raw_sockets import closed_by_server, connect, read_answer

KEEP_ALIVE_S = 2  # below the default (5 s), which a missed setting would fall back to
STATUS = b"GET /status HTTP/1.1\r\nHost: gateway\r\n\r\n"


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    home = tmp_path / "home"
    init_home(home)
    with running_gateway(
        home, tmp_path / "logs", name="keep-alive-gateway", keep_alive_s=KEEP_ALIVE_S
    ) as running:
        yield running


def _connect(gateway: Gateway) -> socket.socket:
    return connect(gateway.server.port, timeout=KEEP_ALIVE_S * 2)


def _status(sock: socket.socket) -> list[bytes]:
    """Ask for /status on ``sock``: the answer's head lines, lowercased ([] if closed)."""
    sock.sendall(STATUS)
    return read_answer(sock)[0]


def _refuses_connections(gateway: Gateway) -> bool:
    try:
        socket.create_connection(("127.0.0.1", gateway.server.port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_an_idle_connection_is_closed_after_keep_alive_s(gateway: Gateway) -> None:
    with _connect(gateway) as sock:
        assert _status(sock)[0].startswith(b"http/1.1 200")
        idle_from = time.monotonic()
        assert closed_by_server(sock), f"still open after {KEEP_ALIVE_S * 2} s"
        idle_s = time.monotonic() - idle_from
    assert idle_s >= KEEP_ALIVE_S * 0.9, idle_s


def test_on_sigterm_a_request_on_an_idle_connection_is_answered_then_closed(
    gateway: Gateway,
) -> None:
    with _connect(gateway) as sock:
        assert b"connection: close" not in _status(sock)  # kept alive, idle from here on
        gateway.server.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + KEEP_ALIVE_S / 2
        while not _refuses_connections(gateway):  # shutting down: no longer listening
            assert time.monotonic() < deadline, "still accepting connections after SIGTERM"
            time.sleep(0.01)
        # A pooled client (nginx) picks this connection now: answered, the last one on it.
        head = _status(sock)
        assert head, "the gateway closed the idle connection under the request"
        assert head[0].startswith(b"http/1.1 200") and b"connection: close" in head, head
        assert closed_by_server(sock)
    # uvicorn re-raises the signal once it has shut down: killed by SIGTERM, after a clean exit.
    assert gateway.server.process.wait(timeout=15) == -signal.SIGTERM
    assert "Traceback" not in gateway.server.stderr()
