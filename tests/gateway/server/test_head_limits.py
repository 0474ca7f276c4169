"""The bounded protocols on both uvicorn implementations (httptools and h11), on real sockets.

A small ASGI app behind a real uvicorn server in a thread, with small limits; the process-level
test (`orchestra serve`, RSS) is tests/gateway/http/test_head_limits.py.
"""

from __future__ import annotations

import itertools
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from gateway.server.head_limits import HeadCounter, HeadLimits
from gateway.server.protocols import http_protocol
from tests.support.threaded_uvicorn import serving_in_thread

LIMITS = HeadLimits(max_header_bytes=1024, max_headers=10, max_request_line_bytes=256)
IMPLEMENTATIONS = ["httptools", "h11"]


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers with the number of body bytes received."""
    if scope["type"] != "http":
        return
    size = 0
    more = True
    while more:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    body = str(size).encode()
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module", params=IMPLEMENTATIONS)
def port(request: pytest.FixtureRequest) -> Iterator[int]:
    with serving_in_thread(
        echo_app,
        http=http_protocol(LIMITS, request.param),
        h11_max_incomplete_event_size=LIMITS.max_header_bytes,
        lifespan="off",
    ) as served:
        yield served


def _answers(port: int, *pieces: bytes, expected: int = 1) -> list[tuple[int, bytes]]:
    """Send ``pieces`` (one write each); read ``expected`` answers, or until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            for piece in pieces:
                sock.sendall(piece)
                time.sleep(0.002)
        except (BrokenPipeError, ConnectionResetError):
            pass
        received = b""
        answers: list[tuple[int, bytes]] = []
        while len(answers) < expected:
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            received += chunk
            while b"\r\n\r\n" in received:
                head, rest = received.split(b"\r\n\r\n", 1)
                length = int(
                    next(
                        line.split(b":")[1]
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    )
                )
                if len(rest) < length:
                    break
                answers.append((int(head.split(b" ")[1]), rest[:length]))
                received = rest[length:]
        return answers


def _get(extra: bytes = b"", target: bytes = b"/") -> bytes:
    return b"GET " + target + b" HTTP/1.1\r\nHost: t\r\n" + extra + b"\r\n"


def _padded(total: int) -> bytes:
    start, end = b"GET / HTTP/1.1\r\nHost: t\r\nX-Pad: ", b"\r\n\r\n"
    return start + b"p" * (total - len(start) - len(end)) + end


def test_the_limits_on_the_head(port: int) -> None:
    assert _answers(port, _padded(1024)) == [(200, b"0")]
    assert _answers(port, _padded(1025))[0][0] == 431
    fields = b"".join(b"X-%d: v\r\n" % i for i in range(9))  # + Host = 10
    assert _answers(port, _get(fields)) == [(200, b"0")]
    assert _answers(port, _get(fields + b"X-Last: v\r\n"))[0][0] == 431
    target = b"/" + b"q" * (256 - len(b"GET / HTTP/1.1"))
    assert _answers(port, _get(target=target)) == [(200, b"0")]
    assert _answers(port, _get(target=target + b"q"))[0][0] == 414


def test_an_endless_header_is_cut_at_the_limit(port: int) -> None:
    pieces = [b"GET / HTTP/1.1\r\nX-Endless: "] + [b"e" * 4096] * 256
    assert _answers(port, *pieces)[0][0] == 431


def test_a_body_is_not_counted_as_head(port: int) -> None:
    body = b"\r\n" * 50_000  # line breaks too: none of them count as header fields
    head = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(body)
    assert _answers(port, head + body) == [(200, b"100000")]
    assert _answers(port, head, body[:70_000], body[70_000:]) == [(200, b"100000")]


def test_a_head_split_anywhere_is_counted_the_same(port: int) -> None:
    head = _padded(1024)
    pieces = [head[i : i + 1] for i in range(1000, len(head))]
    assert _answers(port, head[:1000], *pieces) == [(200, b"0")]


def test_keep_alive_and_pipelined_requests_each_have_their_own_head(port: int) -> None:
    near = _padded(1000)
    assert _answers(port, near, near, expected=2) == [(200, b"0"), (200, b"0")]
    assert _answers(port, near + near, expected=2) == [(200, b"0"), (200, b"0")]
    answers = _answers(port, near, _padded(2000), expected=2)
    assert [status for status, _ in answers] == [200, 431]


@pytest.mark.parametrize("limit_kind", ["bytes", "fields", "line"])
def test_the_counter_gives_the_same_verdict_for_every_split(limit_kind: str) -> None:
    heads = {
        "bytes": (_padded(1024), _padded(1025)),
        "fields": (
            _get(b"".join(b"X-%d: v\r\n" % i for i in range(9))),
            _get(b"".join(b"X-%d: v\r\n" % i for i in range(10))),
        ),
        "line": (
            _get(target=b"/" + b"q" * 242),
            _get(target=b"/" + b"q" * 243),
        ),
    }[limit_kind]
    for head, refused in zip(heads, (False, True), strict=True):
        for first, second in itertools.combinations(range(0, len(head), 7), 2):
            counter = HeadCounter(LIMITS)
            verdicts = [counter.feed(part) for part in (head[:first], head[first:second])]
            verdicts.append(counter.feed(head[second:]))
            refusals = [v for v in verdicts if v is not None]
            assert bool(refusals) is refused, (first, second, verdicts)
