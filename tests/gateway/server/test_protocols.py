"""Shutdown on both protocols (httptools and h11), on real sockets: an idle keep-alive
connection is not closed under a request its client has just written.

uvicorn's own protocols close every idle connection when shutdown begins; a request that
arrives on one then meets a reset (nginx turns that into a 502). The bounded-head side of the
same classes is tests/gateway/server/test_head_limits.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import uvicorn

from gateway.server.head_limits import HeadLimits
from gateway.server.protocols import http_protocol
from tests.support.raw_sockets import closed_by_server, connect, read_answer
from tests.support.threaded_uvicorn import server_in_thread

LIMITS = HeadLimits(max_header_bytes=4096, max_headers=20, max_request_line_bytes=1024)
KEEP_ALIVE_S = 1
#: Far longer than the keep-alive: a connection still open when it passes was never closed.
GRACEFUL_S = 10
REQUEST = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"


async def hello_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    headers = [(b"content-length", b"5")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"hello"})


@dataclass(frozen=True)
class Served:
    server: uvicorn.Server
    port: int
    implementation: str


@pytest.fixture(params=["httptools", "h11"])
def served(request: pytest.FixtureRequest) -> Iterator[Served]:
    with server_in_thread(
        hello_app,
        http=http_protocol(LIMITS, request.param),
        lifespan="off",
        timeout_keep_alive=KEEP_ALIVE_S,
        timeout_graceful_shutdown=GRACEFUL_S,
    ) as (server, port):
        yield Served(server, port, request.param)


def _begin_shutdown(server: uvicorn.Server) -> None:
    """Tell the server to exit; return once it has stopped listening, which it does in the same
    step (no await between) as telling each connection to shut down."""
    server.should_exit = True
    deadline = time.monotonic() + 5
    while any(s.is_serving() for s in server.servers) and time.monotonic() < deadline:
        time.sleep(0.005)
    assert not any(s.is_serving() for s in server.servers), "the server did not begin to stop"


def test_a_request_on_an_idle_connection_during_shutdown_is_answered_then_closed(
    served: Served,
) -> None:
    with connect(served.port, timeout=GRACEFUL_S / 2) as sock:
        sock.sendall(REQUEST)
        head, body = read_answer(sock)
        assert head[0].startswith(b"http/1.1 200") and body == b"hello"
        assert b"connection: close" not in head  # kept alive: idle from here on
        _begin_shutdown(served.server)
        # What a pooled client (nginx) does when it picks this connection in that instant.
        sock.sendall(REQUEST)
        head, body = read_answer(sock)
        assert head, "the server closed the connection under the request"
        assert head[0].startswith(b"http/1.1 200") and body == b"hello"
        if served.implementation == "httptools":
            assert b"connection: close" in head  # h11 closes without saying so beforehand
        assert closed_by_server(sock)  # the last answer on it


@pytest.mark.parametrize("requests_before", [0, 1])
def test_an_idle_connection_closes_at_its_keep_alive_during_shutdown(
    served: Served, requests_before: int
) -> None:
    """With no request yet (nothing has armed its timer) and after one (the timer is armed)."""
    with connect(served.port, timeout=GRACEFUL_S / 2) as sock:
        for _ in range(requests_before):
            sock.sendall(REQUEST)
            assert read_answer(sock)[1] == b"hello"
        started = time.monotonic()
        _begin_shutdown(served.server)
        # Closed by the keep-alive timer, not left until uvicorn gives up (GRACEFUL_S).
        assert closed_by_server(sock)
        print(f"closed after {time.monotonic() - started:.2f} s")  # noqa: T201
