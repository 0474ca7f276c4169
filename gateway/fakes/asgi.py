"""Minimal raw-ASGI plumbing shared by the fake's handlers."""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from gateway.fakes.errors import ApiError, Headers
from gateway.fakes.recorder import RequestRecord

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

JSON_HEADERS: Headers = (
    (b"content-type", b"application/json"),
    (b"openai-version", b"2020-10-01"),
)


def new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(15)


async def read_body(receive: Receive) -> bytes | None:
    """The whole request body, or ``None`` if the client disconnected first."""
    parts: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(parts)


async def send_bytes(send: Send, status: int, body: bytes, headers: Headers = JSON_HEADERS) -> None:
    start_headers = [*headers, (b"content-length", str(len(body)).encode())]
    start_headers.append((b"x-request-id", new_id("req_").encode()))
    await send({"type": "http.response.start", "status": status, "headers": start_headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def send_error(send: Send, error: ApiError, record: RequestRecord | None = None) -> None:
    if record is not None:
        record.status_code = error.status
        record.finish("failed")
    await send_bytes(send, error.status, error.body(), (*JSON_HEADERS, *error.headers))


def parse_json(raw: bytes) -> tuple[bool, Any]:
    """``(True, value)`` for valid JSON, ``(False, None)`` otherwise."""
    try:
        return True, json.loads(raw)
    except ValueError:
        return False, None


async def watch_disconnect(
    receive: Receive, record: RequestRecord, work: Awaitable[object]
) -> None:
    """Run ``work``; if the client disconnects meanwhile, cancel it and mark ``cancelled``."""
    task = asyncio.current_task()
    if task is None:
        raise RuntimeError("watch_disconnect needs a running task")
    gone = False

    async def watch() -> None:
        nonlocal gone
        while (await receive())["type"] != "http.disconnect":
            pass
        gone = True
        task.cancel()

    watcher = asyncio.get_running_loop().create_task(watch())
    try:
        await work
    except asyncio.CancelledError:
        record.finish("cancelled")
        if not gone or task.uncancel() > 0:
            raise
    finally:
        watcher.cancel()


def run_blocking(
    app: ASGIApp,
    *,
    host: str,
    port: int,
    sock: socket.socket | None,
    tls: tuple[str, str] | None = None,
) -> None:
    """Run ``app`` with uvicorn until interrupted, quietly; on ``sock`` when it is given.

    ``tls`` (certificate file, key file): serve HTTPS (tests of TLS through a proxy).
    """
    import uvicorn

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=2,
        ssl_certfile=None if tls is None else tls[0],
        ssl_keyfile=None if tls is None else tls[1],
    )
    uvicorn.Server(config).run(sockets=None if sock is None else [sock])
