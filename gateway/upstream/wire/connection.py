"""A small HTTP/1.1 client for the one narrow API the gateway calls (POST a JSON body): its
connections here, its pools in ``pool.py``.

(And GET, for the few small documents the gateway reads: OpenID discovery and keys.)

Why not httpx: per request httpcore walks its whole pool (a list comprehension over every
connection), rebuilds anyio's typed attributes and runs h11 in Python; per streamed read it
goes through four layers of async generators and an anyio cancel scope. Under 200 open
streams that was most of the gateway's CPU. Here a connection is an ``asyncio.Protocol``
whose bytes go straight into ``httptools`` (the C parser uvicorn uses); a reader waits on one
future per network read, with its deadline as a timer handle, not a cancel scope.

What it does: keep-alive pools per origin (LIFO, so the warm connection is reused), TLS with
SNI, Content-Length / chunked / close-delimited bodies, gzip and deflate, read flow control.
What it does not: redirects (never followed, by design), HTTP/2, request streaming. Forward
proxies are a dialer's business (gateway/upstream/tunnel.py): a connection it opened to a proxy
for a plain-http origin carries ``forward`` (the absolute-form target prefix and the proxy's
header lines), which the request line and head then use.
Errors are ``WireError`` subclasses; the OpenAI client maps them to the UpstreamError tree.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from dataclasses import dataclass
from typing import Protocol, cast
from urllib.parse import urlsplit

import httptools

#: Above this many unread body bytes the socket stops being read (the reader is slow).
READ_HIGH_WATER = 256 * 1024
#: The most one read of a compressed body decodes to (the rest waits in the decoder).
MAX_DECODED_READ = 256 * 1024
#: Idle connections kept per origin; more are closed when they come back.
MAX_IDLE_PER_ORIGIN = 256


class WireError(Exception):
    """The exchange failed at the transport level."""


class ConnectFailed(WireError):
    """No connection could be opened (nothing was sent)."""


class ConnectTimedOut(ConnectFailed):
    pass


class ReadTimedOut(WireError):
    pass


class ConnectionBroken(WireError):
    """The connection closed or broke in the middle of the response."""

    def __init__(self, message: str, *, before_response: bool = False) -> None:
        super().__init__(message)
        #: Nothing of the response arrived: on a reused connection, safe to send again.
        self.before_response = before_response


class ProtocolViolation(WireError):
    """The peer did not speak HTTP/1.1 (a parse error)."""


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str
    host: str
    port: int

    @property
    def tls(self) -> bool:
        return self.scheme == "https"


def split_url(url: str) -> tuple[Origin, str]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConnectFailed("Only http:// and https:// upstream URLs are supported.")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = parts.path or "/"
    if parts.query:
        target = f"{target}?{parts.query}"
    return Origin(parts.scheme, parts.hostname, port), target


def _host_header(origin: Origin) -> str:
    host = f"[{origin.host}]" if ":" in origin.host else origin.host
    default = 443 if origin.tls else 80
    return host if origin.port == default else f"{host}:{origin.port}"


def _check_header_value(value: str) -> str:
    if "\r" in value or "\n" in value or "\0" in value:
        raise WireError("A header value holds a line break.")
    return value


def _set_timeout(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(ReadTimedOut())


class Connection(asyncio.Protocol):
    """One HTTP/1.1 connection; one exchange at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[None] | None = None
        #: The waiting read's deadline, checked by one timer that is moved only when it would
        #: fire too late (a stream's reads would otherwise arm and cancel one timer each).
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._closed: BaseException | None = None
        self._body: deque[bytes] = deque()
        self._buffered = 0
        self._paused = False
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.headers_done = False
        self.complete = False
        self._keep_alive = False
        self.received_any = False
        self.reused = False
        #: Set on a connection to a forward proxy (a plain-http origin through HTTP_PROXY):
        #: the absolute-form prefix of request targets, and the proxy's header lines.
        self.forward: tuple[str, str] | None = None

    # --- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # cast, not isinstance: uvloop's transports do not derive from asyncio's classes.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.received_any = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ProtocolViolation(f"The upstream sent invalid HTTP ({exc})."))
            return
        if self._buffered > READ_HIGH_WATER and not self._paused and self._transport:
            self._paused = True
            self._transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        if self.headers_done and not self.complete and exc is None and not self._framed():
            self.complete = True  # a body delimited by the end of the connection
        if self._closed is None:  # a parse error already said what went wrong
            self._closed = exc or ConnectionBroken(
                "The upstream closed the connection.", before_response=not self.received_any
            )
        self._wake()

    # --- httptools callbacks -------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        if self.status < 200:
            # 1xx (100 Continue, 103 Early Hints): the real answer follows.
            self.headers.clear()
            return
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self._body.append(body)
        self._buffered += len(body)

    def on_message_complete(self) -> None:
        if self.headers_done:
            self.complete = True
            # Asked now: once the message is complete the parser resets for the next one.
            self._keep_alive = self._parser.should_keep_alive()

    # --- the exchange --------------------------------------------------------------------

    @property
    def usable(self) -> bool:
        transport = self._transport
        return self._closed is None and transport is not None and not transport.is_closing()

    def send(self, data: bytes) -> None:
        assert self._transport is not None
        self._reset()
        self._transport.write(data)

    def _reset(self) -> None:
        self.status = 0
        self.headers = []
        self.headers_done = self.complete = self.received_any = self._keep_alive = False
        self._body.clear()
        self._buffered = 0

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def _framed(self) -> bool:
        return self.header(b"content-length") is not None or (
            b"chunked" in (self.header(b"transfer-encoding") or b"").lower()
        )

    async def wait_headers(self, timeout: float) -> None:
        while not self.headers_done:
            self._raise_if_closed()
            await self._wait(timeout)

    async def read(self, timeout: float) -> bytes:
        """The body bytes received so far (waiting up to ``timeout`` for some); b"" at the end."""
        while not self._body:
            if self.complete:
                return b""
            self._raise_if_closed()
            await self._wait(timeout)
        data = self._body.popleft() if len(self._body) == 1 else b"".join(self._body)
        self._body.clear()
        self._buffered = 0
        if self._paused and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()
        return data

    def _raise_if_closed(self) -> None:
        closed = self._closed
        if closed is None:
            return
        if isinstance(closed, WireError):
            raise closed
        raise ConnectionBroken(f"The connection to the upstream broke ({type(closed).__name__}).")

    async def _wait(self, timeout: float) -> None:
        waiter = self._loop.create_future()
        self._waiter = waiter
        self._deadline = deadline = self._loop.time() + timeout
        timer = self._timer
        if timer is None or timer.when() > deadline:
            if timer is not None:
                timer.cancel()
            self._timer = self._loop.call_at(deadline, self._deadline_check)
        try:
            await waiter
        finally:
            self._waiter = None

    def _deadline_check(self) -> None:
        self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return  # nothing waits now: the next read arms the timer again
        if self._loop.time() < self._deadline:
            self._timer = self._loop.call_at(self._deadline, self._deadline_check)
            return
        _set_timeout(waiter)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: WireError) -> None:
        self._closed = error
        self.close()
        self._wake()

    @property
    def keep_alive(self) -> bool:
        return self.complete and self._keep_alive and self.usable

    def close(self) -> None:
        self._stop_timer()
        if self._transport is not None:
            self._transport.close()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def detach(self) -> asyncio.Transport:
        """Hand the transport over (to wrap it in TLS after a CONNECT); this object is done."""
        self._stop_timer()
        transport, self._transport = self._transport, None
        assert transport is not None
        self._closed = ConnectionBroken("The connection was handed over.")
        return transport


class Dialer(Protocol):
    """Opens a connection; the SSRF guard (gateway/upstream/egress.py) is one."""

    async def dial(
        self,
        host: str,
        port: int,
        *,
        tls: ssl.SSLContext | None,
        server_hostname: str | None,
        timeout: float,
    ) -> Connection: ...


class TCPDialer:
    async def dial(
        self,
        host: str,
        port: int,
        *,
        tls: ssl.SSLContext | None,
        server_hostname: str | None,
        timeout: float,
    ) -> Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                _, connection = await loop.create_connection(
                    lambda: Connection(loop),
                    host,
                    port,
                    ssl=tls,
                    server_hostname=server_hostname if tls is not None else None,
                )
        except TimeoutError:
            raise ConnectTimedOut(f"Connecting to {host}:{port} timed out.") from None
        except (OSError, ssl.SSLError) as exc:
            raise ConnectFailed(f"Cannot connect to {host}:{port} ({type(exc).__name__}).") from exc
        return connection


def _default_tls(ca_bundle: str | None = None) -> ssl.SSLContext:
    """Verifying TLS against ``ca_bundle`` (a PEM file) or else certifi's bundle."""
    if ca_bundle is not None:
        context = ssl.create_default_context(cafile=ca_bundle)
    else:
        try:
            import certifi  # the same CA bundle httpx and the openai SDK use

            context = ssl.create_default_context(cafile=certifi.where())
        except ImportError:  # pragma: no cover (certifi comes with the openai SDK)
            context = ssl.create_default_context()
    context.set_alpn_protocols(["http/1.1"])
    return context
