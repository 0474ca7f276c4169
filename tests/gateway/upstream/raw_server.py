"""A tiny raw HTTP/1.1 server on 127.0.0.1, run in the test's event loop.

For upstream behaviour the OpenAI fake has no directive for: invalid JSON chunks, odd SSE
framing (``raw_stream``), redirects, a server that accepts and never answers, a port that
starts listening later. Every response is ``Connection: close``; each handler writes the whole
response itself.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field

import anyio
from anyio.abc import SocketAttribute, SocketStream

MAX_HEAD = 65_536


@dataclass(frozen=True)
class RawRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> object:
        return json.loads(self.body)


Handler = Callable[[RawRequest, SocketStream], Awaitable[None]]


@dataclass
class RawServer:
    port: int
    requests: list[RawRequest] = field(default_factory=list)
    connections: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"


async def _read_request(stream: SocketStream) -> RawRequest | None:
    data = b""
    while b"\r\n\r\n" not in data:
        try:
            chunk = await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            return None
        data += chunk
        if len(data) > MAX_HEAD:
            return None
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        try:
            body += await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            return None
    return RawRequest(method, path, headers, body[:length])


@asynccontextmanager
async def raw_server(handler: Handler, *, port: int = 0) -> AsyncIterator[RawServer]:
    """Serve ``handler`` on 127.0.0.1 (``port`` 0: a free one) until the block ends."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=port)
    server = RawServer(listener.extra(SocketAttribute.local_port))

    async def serve_one(stream: SocketStream) -> None:
        server.connections += 1
        async with stream:
            request = await _read_request(stream)
            if request is None:
                return
            server.requests.append(request)
            with suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                await handler(request, stream)

    async with listener, anyio.create_task_group() as tasks:
        tasks.start_soon(listener.serve, serve_one)
        try:
            yield server
        finally:
            tasks.cancel_scope.cancel()


# --- responses ------------------------------------------------------------------------------


def _head(status: int, reason: str, headers: Sequence[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}", *(f"{k}: {v}" for k, v in headers)]
    lines.append("connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def answer(
    status: int, body: object, *, reason: str = "X", headers: Sequence[tuple[str, str]] = ()
) -> Handler:
    """A JSON answer with this status."""
    payload = json.dumps(body).encode()

    async def handle(_: RawRequest, stream: SocketStream) -> None:
        all_headers = [
            ("content-type", "application/json"),
            ("content-length", str(len(payload))),
            *headers,
        ]
        await stream.send(_head(status, reason, all_headers) + payload)

    return handle


def chunk_json(
    text: str | None = None, *, model: str = "gpt-4o-mini", finish: str | None = None
) -> str:
    delta = {"role": "assistant", "content": ""} if text is None else {"content": text}
    return json.dumps(
        {
            "id": "chatcmpl-raw",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
    )


def sse(
    payloads: Sequence[str],
    *,
    end: str | None = "[DONE]",
    delay: float = 0.0,
    then_hang: bool = False,
) -> Handler:
    """A text/event-stream answer: one ``data:`` line per payload (sent as given)."""

    async def handle(_: RawRequest, stream: SocketStream) -> None:
        await stream.send(_head(200, "OK", [("content-type", "text/event-stream")]))
        for payload in payloads:
            await stream.send(f"data: {payload}\n\n".encode())
            if delay:
                await anyio.sleep(delay)
        if end is not None:
            await stream.send(f"data: {end}\n\n".encode())
        if then_hang:
            await wait_for_close(stream)

    return handle


def raw_stream(
    reads: Iterable[bytes], *, then_hang: bool = False, headers: Sequence[tuple[str, str]] = ()
) -> Handler:
    """A text/event-stream answer whose body is ``reads``, each sent as it is (any framing)."""

    async def handle(_: RawRequest, stream: SocketStream) -> None:
        await stream.send(_head(200, "OK", [("content-type", "text/event-stream"), *headers]))
        for read in reads:
            await stream.send(read)
        if then_hang:
            await wait_for_close(stream)

    return handle


def ok_stream(words: Sequence[str] = ("raw ", "answer ")) -> Handler:
    """A well-formed OpenAI stream (role chunk, words, finish chunk, [DONE])."""
    return sse([chunk_json(), *(chunk_json(w) for w in words), chunk_json(finish="stop")])


async def wait_for_close(stream: SocketStream) -> None:
    """Block until the client closes the connection."""
    try:
        while True:
            await stream.receive()
    except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
        return


async def silent(_: RawRequest, stream: SocketStream) -> None:
    """Accept the request and never answer (until the client gives up)."""
    await wait_for_close(stream)


#: The prompt of the follow-up request a fault test sends to check that it can still be served.
FOLLOWUP_PROMPT = "still there?"


def fault_then_fine(fault: Handler, *, fine: Handler | None = None) -> Handler:
    """``fault`` for every request but the follow-up (its body holds FOLLOWUP_PROMPT)."""
    healthy = fine or ok_stream()

    async def handle(request: RawRequest, stream: SocketStream) -> None:
        chosen = healthy if FOLLOWUP_PROMPT.encode() in request.body else fault
        await chosen(request, stream)

    return handle
