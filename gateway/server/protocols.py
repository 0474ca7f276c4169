"""The gateway's HTTP/1.1 protocols: uvicorn's two, with bounded request heads and a shutdown
that never resets a request.

Bounded heads: see head_limits.py.

Shutdown: uvicorn closes every idle keep-alive connection the moment it begins to shut down.
A client that reuses pooled connections (nginx in front of the replicas) may have written a
request onto one in that same instant: the request meets a reset, and nginx answers 502, as it
never sends a POST that reached a replica to another one. The topology test saw this once in
a dozen rolling stops on a loaded machine. Here an idle connection is left open when shutdown
begins: a request that arrives on it is served, with ``Connection: close``, and the connection
closes when its client closes it or its keep-alive timer fires (``keep_alive_s``). A proxy
whose idle timeout is shorter than that (config/nginx) always closes first, so no request is
ever written onto a connection the gateway is closing. The same rule removes the race outside
shutdown, when the gateway's keep-alive timer closes an idle connection.
"""

from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING, Any, Literal, cast

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.server.head_limits import HeadGuard, HeadLimits

if TYPE_CHECKING:
    from gateway.settings import Settings

#: h11 states in which the next bytes from the client are a request head.
_H11_HEAD_STATES = frozenset({h11.IDLE, h11.DONE, h11.MUST_CLOSE})


class GatewayHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with bounded request heads and a graceful idle close."""

    def __init__(self, *args: Any, limits: HeadLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._guard = HeadGuard(limits)
        self._in_head = True  # between requests, or inside a head (the parser's callbacks say)
        self.closing = False  # shutting down: the next response is the last

    def data_received(self, data: bytes) -> None:
        if self._guard.admit(
            data, in_head=self._in_head, transport=self.transport, server_state=self.server_state
        ):
            super().data_received(data)

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()
        if self.closing and self.cycle is not None:
            self.cycle.keep_alive = False

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True

    def shutdown(self) -> None:
        if not _close_when_idle(self):
            super().shutdown()


class GatewayH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with bounded request heads (and 431/414 rather than 400) and a
    graceful idle close."""

    def __init__(self, *args: Any, limits: HeadLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._guard = HeadGuard(limits)
        self.closing = False  # shutting down: the next response is the last

    def data_received(self, data: bytes) -> None:
        in_head = self.conn.their_state in _H11_HEAD_STATES
        if self._guard.admit(
            data, in_head=in_head, transport=self.transport, server_state=self.server_state
        ):
            super().data_received(data)

    def handle_events(self) -> None:
        super().handle_events()
        if self.closing and self.cycle is not None:
            self.cycle.keep_alive = False

    def shutdown(self) -> None:
        if not _close_when_idle(self):
            super().shutdown()


def _close_when_idle(protocol: GatewayHttpToolsProtocol | GatewayH11Protocol) -> bool:
    """Shutdown on an idle connection: left open, its next response its last, its keep-alive
    timer running. False while a request is in flight (uvicorn's own shutdown: the response
    under way is the last)."""
    cycle = protocol.cycle
    if cycle is not None and not cycle.response_complete:
        return False
    protocol.closing = True
    if protocol.timeout_keep_alive_task is None:  # no request yet: nothing has armed it
        protocol.timeout_keep_alive_task = protocol.loop.call_later(
            protocol.timeout_keep_alive, protocol.timeout_keep_alive_handler
        )
    return True


def http_protocol(
    limits: HeadLimits, implementation: Literal["httptools", "h11"] = "httptools"
) -> type[asyncio.Protocol]:
    """What to pass as uvicorn's ``http=``: the chosen protocol class, bound to ``limits``.

    A partial of a module-level class, so that it pickles into ``--workers`` processes; uvicorn
    only ever calls it with keyword arguments (``config``, ``server_state``, ...).
    """
    base = GatewayHttpToolsProtocol if implementation == "httptools" else GatewayH11Protocol
    return cast("type[asyncio.Protocol]", functools.partial(base, limits=limits))


def graceful_shutdown_s(settings: Settings) -> int:
    """How long uvicorn waits on SIGTERM for connections to close before it gives up on them:
    longer than the drain of open streams and than an idle connection's keep-alive."""
    return int(max(settings.shutdown_drain_s, settings.keep_alive_s)) + 5
