"""Keep-alive pools per origin and the responses read from their connections."""

from __future__ import annotations

import asyncio
import ssl
import zlib
from collections.abc import Iterable

from gateway.upstream.wire.connection import (
    MAX_DECODED_READ,
    MAX_IDLE_PER_ORIGIN,
    Connection,
    ConnectionBroken,
    Dialer,
    Origin,
    ProtocolViolation,
    TCPDialer,
    _check_header_value,
    _default_tls,
    _host_header,
    split_url,
)


class Response:
    """A response whose body is read as it arrives; ``release`` (or ``close``) it after."""

    def __init__(self, pool: Pool, origin: Origin, connection: Connection) -> None:
        self._pool = pool
        self._origin = origin
        self._connection: Connection | None = connection
        self.status = connection.status
        self.headers = connection.headers
        encoding = (connection.header(b"content-encoding") or b"").strip().lower()
        self._decoder: zlib._Decompress | None = None
        if encoding in (b"gzip", b"x-gzip"):
            self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == b"deflate":
            self._decoder = zlib.decompressobj()

    def header(self, name: bytes) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value.decode("latin-1")
        return None

    async def read(self, timeout: float) -> bytes:
        """The next bytes of the body (waiting up to ``timeout``); b"" once it is complete."""
        connection = self._connection
        if connection is None:
            return b""
        if self._decoder is not None:
            return await self._read_decoded(connection, self._decoder, timeout)
        data = await connection.read(timeout)
        if not data:
            self.release()
        return data

    async def _read_decoded(
        self, connection: Connection, decoder: zlib._Decompress, timeout: float
    ) -> bytes:
        """At most MAX_DECODED_READ bytes, never b"" before the end of the body.

        A few compressed bytes can stand for megabytes (a bomb): what is left is decoded by
        the next calls. A read that decodes to nothing (a gzip header, part of a block) is
        not the end of the body: the next one is waited for.
        """
        while True:
            data = decoder.unconsumed_tail
            if not data:
                data = await connection.read(timeout)
                if not data:
                    self.release()
                    return b""
            try:
                decoded = decoder.decompress(data, MAX_DECODED_READ)
            except zlib.error:
                self.close()
                raise ProtocolViolation("The upstream sent a corrupt compressed body.") from None
            if decoded:
                return decoded

    async def read_all(self, timeout: float, limit: int = 64 * 1024 * 1024) -> bytes:
        parts: list[bytes] = []
        size = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while data := await self.read(max(0.0, deadline - loop.time())):
            size += len(data)
            if size > limit:
                self.close()
                raise ProtocolViolation("The upstream's answer is too large.")
            parts.append(data)
        return b"".join(parts)

    def release(self) -> None:
        """Give the connection back to the pool if the response was read to its end."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if connection.keep_alive:
            self._pool.put_back(self._origin, connection)
        else:
            connection.close()

    def close(self) -> None:
        """Drop the connection now (an unfinished answer: the upstream stops generating)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


class Pool:
    def __init__(
        self,
        dialer: Dialer | None = None,
        *,
        connect_timeout: float = 10.0,
        ca_bundle: str | None = None,
    ) -> None:
        self.dialer: Dialer = dialer or TCPDialer()
        self._connect_timeout = connect_timeout
        self._idle: dict[Origin, list[Connection]] = {}
        self._tls: ssl.SSLContext | None = None
        self._ca_bundle = ca_bundle
        self._user_agent = "orchestra"

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            # Loading the CA bundle costs ~20 ms: once, when needed.
            self._tls = _default_tls(self._ca_bundle)
        return self._tls

    async def _connection(self, origin: Origin) -> Connection:
        idle = self._idle.get(origin)
        while idle:
            connection = idle.pop()
            if connection.usable:
                connection.reused = True
                return connection
            connection.close()
        connection = await self.dialer.dial(
            origin.host,
            origin.port,
            tls=self._tls_context() if origin.tls else None,
            server_hostname=origin.host if origin.tls else None,
            timeout=self._connect_timeout,
        )
        connection.reused = False
        return connection

    def put_back(self, origin: Origin, connection: Connection) -> None:
        idle = self._idle.setdefault(origin, [])
        if len(idle) >= MAX_IDLE_PER_ORIGIN:
            connection.close()
            return
        idle.append(connection)

    async def post(
        self,
        url: str,
        body: bytes,
        headers: Iterable[tuple[str, str]],
        *,
        timeout: float,
    ) -> Response:
        """Send a POST and wait up to ``timeout`` for the response's headers."""
        origin, target = split_url(url)
        head = [
            f"Host: {_host_header(origin)}",
            f"User-Agent: {self._user_agent}",
            "Accept-Encoding: gzip, deflate",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
        ]
        head.extend(f"{name}: {_check_header_value(value)}" for name, value in headers)
        return await self._exchange(origin, f"POST {target}", "\r\n".join(head), body, timeout)

    async def get(
        self, url: str, headers: Iterable[tuple[str, str]], *, timeout: float
    ) -> Response:
        """Send a GET (no body, no compression asked for) and wait for the response's headers."""
        return await self.bodiless("GET", url, headers, timeout=timeout)

    async def bodiless(
        self, method: str, url: str, headers: Iterable[tuple[str, str]], *, timeout: float
    ) -> Response:
        """Send a request without a body (GET, DELETE) and wait for the response's headers."""
        origin, target = split_url(url)
        head = [
            f"Host: {_host_header(origin)}",
            f"User-Agent: {self._user_agent}",
            "Accept-Encoding: identity",
        ]
        head.extend(f"{name}: {_check_header_value(value)}" for name, value in headers)
        return await self._exchange(origin, f"{method} {target}", "\r\n".join(head), b"", timeout)

    async def _exchange(
        self, origin: Origin, method_target: str, head: str, body: bytes, timeout: float
    ) -> Response:
        """``method_target`` is ``METHOD /path``; ``head`` the header lines, CRLF-joined."""
        for attempt in (1, 2):
            connection = await self._connection(origin)
            forward = connection.forward
            if forward is None:
                start = f"{method_target} HTTP/1.1\r\n"
            else:  # absolute-form through a forward proxy: POST http://host:port/path
                method, _, target = method_target.partition(" ")
                start = f"{method} {forward[0]}{target} HTTP/1.1\r\n{forward[1]}"
            connection.send((start + head + "\r\n\r\n").encode("latin-1") + body)
            try:
                await connection.wait_headers(timeout)
            except ConnectionBroken as broken:
                connection.close()
                # A kept-alive connection the upstream had already closed: nothing was
                # processed, send it once more on a new connection (as browsers do).
                if attempt == 1 and connection.reused and broken.before_response:
                    continue
                raise
            except BaseException:
                connection.close()
                raise
            return Response(self, origin, connection)
        raise AssertionError("unreachable")  # pragma: no cover

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()
