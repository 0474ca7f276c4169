"""Request heads are bounded in `orchestra serve`: 431/414 before the parser buffers them.

Reproduces issue #21: 8 connections each sending a 100 MB header took the gateway from 107 MB to
986 MB of RSS. Here 8 connections send a 20 MB header each, in chunks over raw sockets, to a real
`orchestra serve` process; each must read a 431 and the gateway's RSS must stay flat.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.gateway.http.conftest import Gateway, child_env, run_cli, running_gateway

MAX_HEADER_BYTES = 65_536
MAX_HEADERS = 100
MAX_REQUEST_LINE_BYTES = 8192

CONNECTIONS = 8
HUGE_HEADER_BYTES = 20 * 1024 * 1024
CHUNK = 64 * 1024
#: Generous: the head limit keeps a connection's buffer at about 64 KiB (+ one read).
RSS_GROWTH_LIMIT_KB = 50 * 1024
ANSWER_TIMEOUT_S = 10.0


@pytest.fixture(scope="module")
def bounded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """Its own gateway (the RSS of the shared one would carry other tests' noise)."""
    root = tmp_path_factory.mktemp("head-limits")
    home = root / "home"
    run_cli(["init"], child_env({"home": home}))
    with running_gateway(home, root / "logs", name="head-limits") as gateway:
        yield gateway


def _address(gateway: Gateway) -> tuple[str, int]:
    host, port = gateway.url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _read_answer(sock: socket.socket, timeout: float = ANSWER_TIMEOUT_S) -> bytes:
    """Everything the server sends until it closes (or the timeout)."""
    sock.settimeout(timeout)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return received


def _exchange(gateway: Gateway, head: bytes) -> bytes:
    """Send a request head (no half-close: uvicorn drops a connection at EOF); the answer."""
    with socket.create_connection(_address(gateway), timeout=ANSWER_TIMEOUT_S) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(head)  # may be refused while sending: the answer is there to read
        return _read_answer(sock)


def _status(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    return int(answer.split(b" ", 2)[1])


def _send_huge_header(gateway: Gateway) -> bytes:
    """Send a 20 MB header in chunks; stop as soon as the server answers; the answer."""
    with socket.create_connection(_address(gateway), timeout=ANSWER_TIMEOUT_S) as sock:
        sock.sendall(b"POST /ask HTTP/1.1\r\nHost: gateway\r\nX-Huge: ")
        filler = b"a" * CHUNK
        sent = 0
        try:
            while sent < HUGE_HEADER_BYTES:
                readable, _, _ = select.select([sock], [], [], 0)
                if readable:
                    break
                sock.sendall(filler)
                sent += len(filler)
        except (BrokenPipeError, ConnectionResetError):
            pass
        return _read_answer(sock)


def _padded_head(total: int) -> bytes:
    """A GET /status whose head (request line to final CRLF) is exactly ``total`` bytes."""
    start = b"GET /status HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\nX-Pad: "
    end = b"\r\n\r\n"
    return start + b"p" * (total - len(start) - len(end)) + end


def test_huge_headers_on_many_connections_get_431_and_rss_stays_flat(bounded: Gateway) -> None:
    pid = bounded.server.process.pid
    assert _status(_exchange(bounded, _padded_head(1000))) == 200  # warm
    baseline = _rss_kb(pid)
    peak = baseline
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _rss_kb(pid))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        with ThreadPoolExecutor(CONNECTIONS) as pool:
            answers = list(pool.map(lambda _: _send_huge_header(bounded), range(CONNECTIONS)))
    finally:
        stop.set()
        sampler.join()
    assert [_status(answer) for answer in answers] == [431] * CONNECTIONS
    assert all(b'"code": "request_too_large"' in answer for answer in answers), answers[0]
    assert peak - baseline < RSS_GROWTH_LIMIT_KB, f"RSS {baseline} kB -> peak {peak} kB"
    # The gateway still serves.
    assert _status(_exchange(bounded, _padded_head(1000))) == 200


def test_a_head_at_the_limit_is_served_one_byte_more_is_431(bounded: Gateway) -> None:
    assert _status(_exchange(bounded, _padded_head(MAX_HEADER_BYTES))) == 200
    assert _status(_exchange(bounded, _padded_head(MAX_HEADER_BYTES + 1))) == 431


def test_a_request_line_over_the_limit_is_414(bounded: Gateway) -> None:
    def line_of(size: int) -> bytes:
        start, end = b"GET /status?", b" HTTP/1.1"
        return start + b"q" * (size - len(start) - len(end)) + end

    at_limit = line_of(MAX_REQUEST_LINE_BYTES) + b"\r\nHost: gateway\r\nConnection: close\r\n\r\n"
    assert _status(_exchange(bounded, at_limit)) == 200
    over = line_of(MAX_REQUEST_LINE_BYTES + 1) + b"\r\nHost: gateway\r\nConnection: close\r\n\r\n"
    assert _status(_exchange(bounded, over)) == 414
    # A request line that never ends is refused as soon as it is too long.
    endless = b"GET /" + b"q" * (1024 * 1024)
    assert _status(_exchange(bounded, endless)) == 414


def test_too_many_header_fields_is_431(bounded: Gateway) -> None:
    def head_with(fields: int) -> bytes:
        lines = [b"GET /status HTTP/1.1", b"Host: gateway", b"Connection: close"]
        lines += [b"X-F%d: v" % i for i in range(fields - 2)]
        return b"\r\n".join(lines) + b"\r\n\r\n"

    assert _status(_exchange(bounded, head_with(MAX_HEADERS))) == 200
    answer = _exchange(bounded, head_with(MAX_HEADERS + 1))
    assert _status(answer) == 431
    assert b"header fields" in answer
