"""The HTTP/1.1 client under the upstream: framing, keep-alive, timeouts, flow control.

Each test runs a tiny asyncio server on 127.0.0.1 that writes exactly the bytes under test
and counts the connections it accepted (reuse is a property of the connection count).
"""

from __future__ import annotations

import asyncio
import gzip
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest

from gateway.upstream.wire import (
    MAX_DECODED_READ,
    ConnectFailed,
    ConnectionBroken,
    Pool,
    ProtocolViolation,
    ReadTimedOut,
    WireError,
)

pytestmark = pytest.mark.anyio

Reply = Callable[[bytes, asyncio.StreamWriter], Awaitable[bool]]  # -> keep the connection?


@dataclass
class Server:
    port: int
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)

    def url(self, path: str = "/v1/chat/completions") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


async def _read_request(reader: asyncio.StreamReader) -> bytes | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head + await reader.readexactly(length)


@asynccontextmanager
async def serving(reply: Reply) -> AsyncIterator[Server]:
    server = Server(port=0)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server.connections += 1
        try:
            while (request := await _read_request(reader)) is not None:
                server.requests.append(request)
                if not await reply(request, writer):
                    break
        except ConnectionError:
            pass
        finally:
            writer.close()

    listener = await asyncio.start_server(handle, "127.0.0.1", 0)
    server.port = listener.sockets[0].getsockname()[1]
    async with listener:
        yield server


def fixed(response: bytes, *, keep: bool = True) -> Reply:
    async def reply(_: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(response)
        await writer.drain()
        return keep

    return reply


def ok(body: bytes, *headers: str) -> bytes:
    head = ["HTTP/1.1 200 OK", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def _post(pool: Pool, url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    response = await pool.post(url, b'{"a":1}', [("Authorization", "Bearer k")], timeout=timeout)
    return response.status, await response.read_all(timeout)


async def test_a_content_length_body_is_read_and_the_connection_reused() -> None:
    async with serving(fixed(ok(b'{"ok":true}'))) as server:
        pool = Pool()
        try:
            for _ in range(3):
                assert await _post(pool, server.url()) == (200, b'{"ok":true}')
        finally:
            await pool.aclose()
    assert server.connections == 1, "keep-alive connections were not reused"
    first = server.requests[0]
    assert first.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
    assert b"\r\nHost: 127.0.0.1:" in first and b"\r\nAuthorization: Bearer k\r\n" in first
    assert first.endswith(b'\r\n\r\n{"a":1}')


async def test_a_chunked_body_arrives_as_it_is_sent() -> None:
    release = asyncio.Event()

    async def reply(_: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        await release.wait()
        writer.write(b"6\r\nsecond\r\n0\r\n\r\n")
        return True

    async with serving(reply) as server:
        pool = Pool()
        try:
            response = await pool.post(server.url(), b"{}", [], timeout=2)
            assert await response.read(2) == b"first"  # before the rest was even written
            release.set()
            assert await response.read(2) == b"second"
            assert await response.read(2) == b""
            # The same connection again (the event is set: all of it at once).
            assert await _post(pool, server.url()) == (200, b"firstsecond")
        finally:
            await pool.aclose()
    assert server.connections == 1


async def test_a_body_delimited_by_the_connection_closing_is_complete() -> None:
    response = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end"
    async with serving(fixed(response, keep=False)) as server:
        pool = Pool()
        try:
            assert await _post(pool, server.url()) == (200, b"until the end")
            assert await _post(pool, server.url()) == (200, b"until the end")
        finally:
            await pool.aclose()
    assert server.connections == 2, "a closed connection went back to the pool"


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_compressed_bodies_are_decoded(encoding: str) -> None:
    plain = b'{"text": "' + b"squeeze " * 200 + b'"}'
    packed = gzip.compress(plain) if encoding == "gzip" else zlib.compress(plain)
    async with serving(fixed(ok(packed, f"Content-Encoding: {encoding}"))) as server:
        pool = Pool()
        try:
            assert await _post(pool, server.url()) == (200, plain)
        finally:
            await pool.aclose()


async def test_a_stale_kept_alive_connection_is_replaced_once() -> None:
    """The upstream closed an idle connection; the request goes out on a new one."""
    answered = 0

    async def reply(_: bytes, writer: asyncio.StreamWriter) -> bool:
        nonlocal answered
        answered += 1
        if answered == 2:
            return False  # read the request, close without a byte (an idle-timeout race)
        writer.write(ok(b"fine"))
        await writer.drain()
        return True

    async with serving(reply) as server:
        pool = Pool()
        try:
            assert await _post(pool, server.url()) == (200, b"fine")
            assert await _post(pool, server.url()) == (200, b"fine")
        finally:
            await pool.aclose()
    assert answered == 3 and server.connections == 2


async def test_a_fresh_connection_closed_before_answering_is_an_error() -> None:
    async def reply(_: bytes, writer: asyncio.StreamWriter) -> bool:
        return False

    async with serving(reply) as server:
        pool = Pool()
        try:
            with pytest.raises(ConnectionBroken):
                await _post(pool, server.url())
        finally:
            await pool.aclose()
    assert server.connections == 1, "a request on a new connection must not be sent twice"


async def test_waiting_for_the_headers_times_out() -> None:
    async def reply(_: bytes, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(5)
        return False

    async with serving(reply) as server:
        pool = Pool()
        try:
            started = asyncio.get_running_loop().time()
            with pytest.raises(ReadTimedOut):
                await pool.post(server.url(), b"{}", [], timeout=0.2)
            assert asyncio.get_running_loop().time() - started < 1.0
        finally:
            await pool.aclose()


async def test_a_body_that_stops_arriving_times_out_and_is_not_reused() -> None:
    async with serving(fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf")) as server:
        pool = Pool()
        try:
            response = await pool.post(server.url(), b"{}", [], timeout=1)
            assert await response.read(1) == b"half"
            with pytest.raises(ReadTimedOut):
                await response.read(0.2)
            response.close()
            again = await pool.post(server.url(), b"{}", [], timeout=1)
            again.close()
        finally:
            await pool.aclose()
    assert server.connections == 2, "a half-read connection went back to the pool"


async def test_each_read_keeps_its_own_deadline_shorter_or_longer() -> None:
    """One timer serves every read: a shorter deadline moves it, a longer one re-arms it."""
    release = asyncio.Event()

    async def reply(_: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n")
        await writer.drain()
        await release.wait()
        writer.write(b"1\r\nb\r\n0\r\n\r\n")
        return True

    async with serving(reply) as server:
        pool = Pool()
        loop = asyncio.get_running_loop()
        try:
            response = await pool.post(server.url(), b"{}", [], timeout=30)
            assert await response.read(30) == b"a"  # armed the timer 30 s ahead
            started = loop.time()
            with pytest.raises(ReadTimedOut):
                await response.read(0.2)  # must not wait for the 30 s timer
            assert 0.15 < loop.time() - started < 1.0
            response.close()
            response = await pool.post(server.url(), b"{}", [], timeout=0.3)
            assert await response.read(0.3) == b"a"
            # A longer deadline after a short one: the short timer fires first and moves on.
            loop.call_later(0.6, release.set)
            assert await response.read(2) == b"b"
        finally:
            await pool.aclose()


async def test_a_response_cut_mid_body_is_a_broken_connection() -> None:
    cut = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf"
    async with serving(fixed(cut, keep=False)) as server:
        pool = Pool()
        try:
            response = await pool.post(server.url(), b"{}", [], timeout=1)
            with pytest.raises(ConnectionBroken):
                await response.read_all(1)
        finally:
            await pool.aclose()


async def test_garbage_instead_of_http_is_a_protocol_violation() -> None:
    async with serving(fixed(b"SSH-2.0-OpenSSH_9.2\r\n\r\n", keep=False)) as server:
        pool = Pool()
        try:
            with pytest.raises(ProtocolViolation):
                await _post(pool, server.url())
        finally:
            await pool.aclose()


async def test_a_refused_connection_is_a_connect_failure() -> None:
    listener = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    listener.close()
    await listener.wait_closed()
    pool = Pool()
    with pytest.raises(ConnectFailed):
        await _post(pool, f"http://127.0.0.1:{port}/v1")


async def test_a_header_value_with_a_line_break_is_refused_before_sending() -> None:
    async with serving(fixed(ok(b""))) as server:
        pool = Pool()
        try:
            with pytest.raises(WireError):
                await pool.post(
                    server.url(), b"{}", [("Authorization", "Bearer k\r\nX-Evil: 1")], timeout=1
                )
        finally:
            await pool.aclose()
    assert server.requests == []


async def test_an_interim_100_continue_is_skipped() -> None:
    interim = b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"after")
    async with serving(fixed(interim)) as server:
        pool = Pool()
        try:
            assert await _post(pool, server.url()) == (200, b"after")
        finally:
            await pool.aclose()


async def test_a_slow_reader_pauses_the_socket_and_loses_nothing() -> None:
    """Far more than the high-water mark is sent before the reader reads anything."""
    big = bytes(range(256)) * 8192  # 2 MiB
    async with serving(fixed(ok(big))) as server:
        pool = Pool()
        try:
            response = await pool.post(server.url(), b"{}", [], timeout=2)
            await asyncio.sleep(0.3)  # the server writes; the client buffers, then pauses
            assert await response.read_all(5) == big
        finally:
            await pool.aclose()


async def test_a_get_sends_no_body_asks_for_no_compression_and_reuses_the_connection() -> None:
    async with serving(fixed(ok(b'{"keys":[]}'))) as server:
        pool = Pool()
        try:
            for _ in range(2):
                response = await pool.get(
                    server.url("/jwks?x=1"), [("Accept", "application/json")], timeout=2.0
                )
                assert (response.status, await response.read_all(2.0)) == (200, b'{"keys":[]}')
            # A POST after a GET on the same origin shares the kept-alive connection.
            assert await _post(pool, server.url()) == (200, b'{"keys":[]}')
        finally:
            await pool.aclose()
    assert server.connections == 1
    first = server.requests[0]
    assert first.startswith(b"GET /jwks?x=1 HTTP/1.1\r\n")
    assert b"\r\nAccept-Encoding: identity\r\n" in first
    assert b"\r\nAccept: application/json\r\n" in first
    assert b"Content-Length" not in first
    assert first.endswith(b"\r\n\r\n")


async def test_a_compressed_bomb_is_decoded_a_bounded_piece_at_a_time() -> None:
    plain = b"x" * (20 * 1024 * 1024)
    packed = gzip.compress(plain)  # about 20 KiB
    async with serving(fixed(ok(packed, "Content-Encoding: gzip"))) as server:
        pool = Pool()
        try:
            response = await pool.post(server.url(), b"{}", [], timeout=2)
            sizes = []
            while data := await response.read(2):
                sizes.append(len(data))
        finally:
            await pool.aclose()
    assert sum(sizes) == len(plain)
    assert max(sizes) <= MAX_DECODED_READ, max(sizes)


async def test_a_read_that_decodes_to_nothing_is_not_the_end_of_the_body() -> None:
    packed = gzip.compress(b"data: hello\n\n")
    release = asyncio.Event()

    async def reply(_: bytes, writer: asyncio.StreamWriter) -> bool:
        head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n\r\n"
        writer.write(head.encode() + b"5\r\n" + packed[:5] + b"\r\n")  # half a gzip header
        await writer.drain()
        await release.wait()
        rest = packed[5:]
        writer.write(f"{len(rest):x}\r\n".encode() + rest + b"\r\n0\r\n\r\n")
        return True

    async with serving(reply) as server:
        pool = Pool()
        try:
            response = await pool.post(server.url(), b"{}", [], timeout=2)
            asyncio.get_running_loop().call_later(0.2, release.set)
            assert await response.read(2) == b"data: hello\n\n"
            assert await response.read(2) == b""
        finally:
            await pool.aclose()
