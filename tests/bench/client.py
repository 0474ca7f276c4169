"""The load client: raw HTTP/1.1 on asyncio protocols (uvloop), run in worker processes.

httpx costs a few hundred microseconds of Python per request and more per streamed line, which
on a 2-core machine would make the client, not the server, the bottleneck. This client writes a
pre-encoded request, parses only the status line and the framing headers, decodes chunked
transfer encoding just enough to find the end of the answer, and looks for byte markers:

- first byte: the first ``data_received`` of the response (status line included);
- first delta: the first content chunk (``event: delta`` on /ask, ``"delta":{"content":"`` on
  OpenAI streams; the fake's role chunk has ``"content":""`` after ``"role"``, so it never
  matches); for a non-streamed answer, the end of the body;
- end: the terminal chunk (``0\\r\\n\\r\\n``) or ``Content-Length`` bytes.

An answer counts as an error when its status is not 200, when a stream lacks its final event
(``event: done`` / ``data: [DONE]``), when a non-streamed body lacks ``"finish_reason"``, on a
timeout or when the connection drops. Each worker process runs one :class:`Job` at a time
(closed loop: every connection sends its next request as soon as the previous answer ended) and
reports only answers that ENDED inside the measurement window, so the warm-up and the drain at the
end never count. Times come from ``time.monotonic()`` (``CLOCK_MONOTONIC``, system-wide on
Linux), so windows line up across processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Literal, cast

import uvloop

Expect = Literal["ask", "v1", "json", "probe"]

_FIRST_DELTA: dict[str, bytes] = {
    "ask": b"event: delta",
    "v1": b'"delta":{"content":"',
    "json": b"",
    "probe": b"",
}
_DONE: dict[str, bytes] = {
    "ask": b"event: done",
    "v1": b"data: [DONE]",
    "json": b'"finish_reason"',
    "probe": b"",
}
_TAIL = 1024  # bytes of a stream kept to check its final event
_RECONNECT_PAUSE_S = 0.05


def http_request(
    host: str, port: int, path: str, body: bytes, headers: dict[str, str], method: str = "POST"
) -> bytes:
    """A pre-encoded HTTP/1.1 request (keep-alive)."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@dataclass(frozen=True, slots=True)
class Job:
    """One measurement, or this process's share of it."""

    host: str
    port: int
    payload: bytes
    expect: Expect
    connections: int
    start_at: float  # time.monotonic() when the connections start
    warmup_s: float
    measure_s: float
    drain_s: float
    timeout_s: float
    #: One request per connection, all held open together; the worker reports ("open", n) once
    #: every stream has had its first delta (or failed), then the result when all have ended.
    hold: bool = False


@dataclass(slots=True)
class Result:
    """What one worker saw of one job; times in milliseconds."""

    ttfb: array[float] = field(default_factory=lambda: array("d"))
    ttfd: array[float] = field(default_factory=lambda: array("d"))
    total: array[float] = field(default_factory=lambda: array("d"))
    errors: dict[str, int] = field(default_factory=dict)
    cpu_s: float = 0.0  # this process's user+system CPU during the window
    window_s: float = 0.0
    opened_s: float | None = None  # hold: seconds from start until every stream was open
    #: hold: (first delta, end) of every stream that had one, in time.monotonic()
    open_from: array[float] = field(default_factory=lambda: array("d"))
    open_until: array[float] = field(default_factory=lambda: array("d"))
    #: hold: (request written, end) of every request, streaming yet or not
    sent_from: array[float] = field(default_factory=lambda: array("d"))
    sent_until: array[float] = field(default_factory=lambda: array("d"))

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


class HttpConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection that runs one request at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop, expect: Expect) -> None:
        self._loop = loop
        self._first_mark = _FIRST_DELTA[expect]
        self._done_mark = _DONE[expect]
        self._stream = expect in ("ask", "v1")
        self._any_status = expect == "probe"
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.on_first_delta: Callable[[], None] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._reset()

    def _reset(self) -> None:
        self._head = bytearray()
        self._in_body = False
        self._chunked = False
        self._length = -1
        self._seen = 0
        self._chunk_left = 0
        self._framing = bytearray()
        self._trailer = False
        self._mark_tail = b""
        self._tail = b""
        self._body = bytearray()
        self.status = 0
        self.keep_alive = True
        self.error: str | None = None
        self.t_send = self.t_first_byte = self.t_first_delta = self.t_end = 0.0
        self.saw_delta = False  # a content chunk (or a whole non-streamed body) arrived

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._settle("conn_lost")

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        if self._waiter is None or self._waiter.done():
            return
        if not self.t_first_byte:
            self.t_first_byte = now
        if not self._in_body:
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                return
            self._parse_head(bytes(self._head[:end]))
            data = bytes(self._head[end + 4 :])
            self._in_body = True
            if not self._chunked and self._length <= 0:
                self._finish(now)
                return
        if not data:
            return
        if self._first_mark and not self.t_first_delta:
            probe = self._mark_tail + data
            if self._first_mark in probe:
                self.t_first_delta = now
                self.saw_delta = True
                if self.on_first_delta is not None:
                    self.on_first_delta()
            else:
                self._mark_tail = probe[-len(self._first_mark) :]
        if self._stream:
            self._tail = (self._tail + data)[-_TAIL:]
        else:
            self._body += data
        if self._chunked:
            if self._feed_chunked(data):
                self._finish(now)
        else:
            self._seen += len(data)
            if self._seen >= self._length:
                self._finish(now)

    # the request

    async def request(self, payload: bytes, timeout: float) -> None:
        """Send one request and wait for its whole answer; the outcome is on ``self``."""
        assert self.transport is not None
        self._reset()
        waiter = self._waiter = self._loop.create_future()
        timer = self._loop.call_later(timeout, self._on_timeout)
        self.t_send = time.monotonic()
        self.transport.write(payload)
        try:
            await waiter
        finally:
            timer.cancel()

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()
        self.closed = True

    # internals

    def _on_timeout(self) -> None:
        self._settle("timeout")
        self.close()

    def _settle(self, error: str | None) -> None:
        if self._waiter is not None and not self._waiter.done():
            if error is not None and self.error is None:
                self.error = error
            if not self.t_end:
                self.t_end = time.monotonic()
            self._waiter.set_result(None)

    def _parse_head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        self.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            value = value.strip().lower()
            if name == b"content-length":
                self._length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value:
                self._chunked = True
            elif name == b"connection" and value == b"close":
                self.keep_alive = False

    def _feed_chunked(self, data: bytes) -> bool:
        """Track the chunk framing; True once the terminal chunk and its CRLF are in."""
        buf = self._framing
        buf += data
        pos = 0
        size_end = len(buf)
        while pos < size_end:
            if self._chunk_left:
                take = min(self._chunk_left, size_end - pos)
                pos += take
                self._chunk_left -= take
                continue
            line_end = buf.find(b"\r\n", pos)
            if line_end < 0:
                break
            if self._trailer:
                if line_end == pos:  # the empty line after the last chunk
                    del buf[:]
                    return True
                pos = line_end + 2  # a trailer field: skip it
                continue
            size = int(bytes(buf[pos:line_end]).split(b";", 1)[0], 16)
            pos = line_end + 2
            if size == 0:
                self._trailer = True
            else:
                self._chunk_left = size + 2  # the data and its CRLF
        del buf[:pos]
        return False

    def _finish(self, now: float) -> None:
        if self._waiter is None or self._waiter.done():
            return
        self.t_end = now
        if not self._stream:
            self.t_first_delta = now
            self.saw_delta = True
        error = None
        if self.status != 200 and not self._any_status:
            error = f"http_{self.status}"
        elif (self._stream and self._done_mark not in self._tail) or (
            not self._stream and self._done_mark and self._done_mark not in self._body
        ):
            error = "incomplete"
        if not self.keep_alive:
            self.close()
        self._settle(error)


async def connect(
    loop: asyncio.AbstractEventLoop, host: str, port: int, expect: Expect
) -> HttpConnection:
    transport, conn = await loop.create_connection(lambda: HttpConnection(loop, expect), host, port)
    conn.transport = transport  # uvloop may call connection_made only after this returns
    return conn


class _Run:
    """The shared state of one job's connections inside one worker."""

    def __init__(self, job: Job, notify: Callable[[object], None] | None) -> None:
        self.job = job
        self.result = Result()
        self.t0 = job.start_at + job.warmup_s
        self.t_end = self.t0 + job.measure_s
        self._notify = notify
        self._settled = 0

    def record(self, conn: HttpConnection) -> None:
        end = conn.t_end or time.monotonic()
        if self.job.hold:
            self.result.sent_from.append(conn.t_send)
            self.result.sent_until.append(end)
            if conn.saw_delta:
                self.result.open_from.append(conn.t_first_delta)
                self.result.open_until.append(end)
        if not self.job.hold and not self.t0 <= end <= self.t_end:
            return
        if conn.error is not None:
            self.result.error(conn.error)
            return
        self.result.ttfb.append((conn.t_first_byte - conn.t_send) * 1000)
        self.result.ttfd.append(((conn.t_first_delta or conn.t_end) - conn.t_send) * 1000)
        self.result.total.append((conn.t_end - conn.t_send) * 1000)

    def settled_one(self) -> None:
        """Hold mode: one more stream is open (or failed before its first delta)."""
        self._settled += 1
        if self._settled == self.job.connections:
            self.result.opened_s = time.monotonic() - self.job.start_at
            if self._notify is not None:
                self._notify(("open", self._settled))


async def _connection_loop(loop: asyncio.AbstractEventLoop, run: _Run) -> None:
    job = run.job
    conn: HttpConnection | None = None
    try:
        while job.hold or time.monotonic() < run.t_end:
            if conn is None or conn.closed:
                try:
                    conn = await connect(loop, job.host, job.port, job.expect)
                except OSError:
                    run.result.error("connect")
                    if job.hold:
                        run.settled_one()
                        return
                    await asyncio.sleep(_RECONNECT_PAUSE_S)
                    continue
            if job.hold:
                conn.on_first_delta = run.settled_one
            await conn.request(job.payload, job.timeout_s)
            if job.hold and not conn.saw_delta:
                run.settled_one()  # failed before streaming
            run.record(conn)
            if job.hold:
                return
    finally:
        if conn is not None:
            conn.close()


async def run_job(job: Job, notify: Callable[[object], None] | None = None) -> Result:
    """Run one job in the current event loop."""
    loop = asyncio.get_running_loop()
    run = _Run(job, notify)
    await asyncio.sleep(max(0.0, job.start_at - time.monotonic()))
    if job.hold:
        run.t0 = job.start_at
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    tasks = [loop.create_task(_connection_loop(loop, run)) for _ in range(job.connections)]
    cpu_mark = None
    if not job.hold:
        await asyncio.sleep(max(0.0, run.t0 - time.monotonic()))
        usage0 = resource.getrusage(resource.RUSAGE_SELF)
        await asyncio.sleep(max(0.0, run.t_end - time.monotonic()))
        cpu_mark = resource.getrusage(resource.RUSAGE_SELF)
    deadline = (run.t_end if not job.hold else time.monotonic()) + job.drain_s
    _, pending = await asyncio.wait(tasks, timeout=max(0.1, deadline - time.monotonic()))
    for task in pending:
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.gather(*pending, return_exceptions=True)
    usage1 = cpu_mark or resource.getrusage(resource.RUSAGE_SELF)
    run.result.cpu_s = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    run.result.window_s = job.measure_s if not job.hold else time.monotonic() - job.start_at
    if job.hold and pending:
        run.result.errors["unfinished"] = len(pending)
    return run.result


def worker_main(pipe: Connection) -> None:
    """A client process: run the jobs that arrive on ``pipe`` until it sends None."""
    while True:
        job = pipe.recv()
        if job is None:
            return
        result = uvloop.run(run_job(job, pipe.send))
        pipe.send(("result", result))
