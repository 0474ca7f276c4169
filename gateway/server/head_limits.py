"""Bounded request heads: no client makes the server buffer a huge request line or header section.

uvicorn's httptools protocol has no limit of its own (httptools joins the pieces of a header in
memory for as long as they arrive: 8 connections sending a 100 MB header each took the gateway
from 107 MB to 986 MB of RSS and 105 CPU-seconds), and h11's ``max_incomplete_event_size`` is
answered with a bare 400. So the gateway's protocols (gateway/server/protocols.py) count the
bytes of a request head as they arrive, *before* the parser sees them. Beyond a limit the client
gets 431 (header section too large, or too many header fields) or 414 (request line too long),
the rest of what it sends is discarded, and the connection is closed after a short linger (so
that the answer is read rather than lost to a reset).

The count is linear: each read that starts inside a head is searched once for the head's end
(and, across reads, the last three bytes of the previous one) and its line feeds are counted.
Whether a read starts inside a head comes from the parser's own state. A pipelined request that
begins in the middle of a read is counted from the next read on, so its head may exceed the
limit by at most one read (asyncio reads at most 256 KiB at a time): memory stays bounded.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from loguru import logger
from uvicorn.server import ServerState

if TYPE_CHECKING:
    from gateway.settings import Settings

#: How long a refused connection stays open (its input discarded) for its client to read the answer.
LINGER_S = 1.0
_HEAD_END = b"\r\n\r\n"
_REASONS = {414: b"URI Too Long", 431: b"Request Header Fields Too Large"}


@dataclass(frozen=True, slots=True)
class HeadLimits:
    """Bytes as sent, line endings included for the head (request line, header lines, final
    CRLF), excluded for the request line."""

    max_header_bytes: int
    max_headers: int
    max_request_line_bytes: int

    @classmethod
    def of(cls, settings: Settings) -> HeadLimits:
        return cls(settings.max_header_bytes, settings.max_headers, settings.max_request_line_bytes)


class HeadCounter:
    """The bytes, lines and request line of the head being received on one connection."""

    __slots__ = ("_bytes", "_limits", "_line_done", "_lines", "_tail")

    def __init__(self, limits: HeadLimits) -> None:
        self._limits = limits
        self.reset()

    def reset(self) -> None:
        self._bytes = 0
        self._lines = 0
        self._line_done = False
        self._tail = b""

    def feed(self, data: bytes) -> tuple[int, str] | None:
        """Count ``data``, which starts inside a head: None, or (status, message) to refuse."""
        limits = self._limits
        end = -1  # where the head ends in data (after its final CRLF), if it does
        if self._tail:
            found = (self._tail + data[:3]).find(_HEAD_END)
            if found >= 0:
                end = found + 4 - len(self._tail)
        if end < 0:
            found = data.find(_HEAD_END)
            if found >= 0:
                end = found + 4
        part = len(data) if end < 0 else end
        if not self._line_done:
            newline = data.find(b"\n", 0, part)
            line = self._bytes + (part if newline < 0 else newline)
            if newline >= 0 and (data[:newline] or self._tail).endswith(b"\r"):
                line -= 1  # the CR of the line's CRLF
            if line > (most := limits.max_request_line_bytes):
                return 414, f"The request line is longer than {most} bytes."
            self._line_done = newline >= 0
        self._bytes += part
        if self._bytes > limits.max_header_bytes:
            return 431, f"The request headers are larger than {limits.max_header_bytes} bytes."
        self._lines += data.count(b"\n", 0, part)
        # Lines so far: the request line, one per header field, and the empty line at the end.
        fields = self._lines - 1 - (1 if end >= 0 else 0)
        if fields > limits.max_headers:
            return 431, f"The request has more than {limits.max_headers} header fields."
        if end >= 0:
            self.reset()
        else:
            self._tail = (self._tail + data[-3:])[-3:]
        return None


class HeadGuard:
    """One connection's gate: counts head bytes, refuses once, then discards what follows."""

    __slots__ = ("_counter", "_refused")

    def __init__(self, limits: HeadLimits) -> None:
        self._counter = HeadCounter(limits)
        self._refused = False

    def admit(
        self,
        data: bytes,
        *,
        in_head: bool,
        transport: asyncio.Transport,
        server_state: ServerState,
    ) -> bool:
        """Whether ``data`` may go to the parser (False once the connection is refused)."""
        if self._refused:
            return False
        if not in_head:
            self._counter.reset()
            return True
        refusal = self._counter.feed(data)
        if refusal is None:
            return True
        self._refused = True
        status, message = refusal
        logger.bind(status=status).warning("request head over the limit; refused")
        transport.write(_answer(status, message, server_state.default_headers))
        if transport.can_write_eof():
            transport.write_eof()
            asyncio.get_running_loop().call_later(LINGER_S, transport.close)
        else:
            transport.close()
        return False


def _answer(status: int, message: str, default_headers: list[tuple[bytes, bytes]]) -> bytes:
    body = json.dumps({"error": {"code": "request_too_large", "message": message}}).encode()
    lines = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status])]
    lines.extend(name + b": " + value + b"\r\n" for name, value in default_headers)
    lines.append(b"content-type: application/json\r\n")
    lines.append(b"content-length: %d\r\n" % len(body))
    lines.append(b"connection: close\r\n\r\n")
    lines.append(body)
    return b"".join(lines)
