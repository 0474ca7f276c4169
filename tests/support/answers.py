"""Reading the gateway's answers: a whole /ask stream, and the shape of its JSON errors."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from tests.support.sse import SSEEvent, sse_events

_TRACEBACK = re.compile(r"Traceback \(most recent call last\)|File \"[^\"]+\", line \d+")


class Caller(Protocol):
    @property
    def auth(self) -> dict[str, str]: ...


@dataclass
class Streamed:
    response: httpx.Response
    blocks: list[SSEEvent]
    started: float

    @property
    def events(self) -> list[SSEEvent]:
        return [b for b in self.blocks if not b.is_comment]

    @property
    def names(self) -> list[str | None]:
        return [e.name for e in self.events]

    @property
    def text(self) -> str:
        return "".join(e.json["text"] for e in self.events if e.name == "delta")

    @property
    def request_id(self) -> str:
        return self.response.headers["x-request-id"]


async def ask_stream(
    client: httpx.AsyncClient,
    app: Caller,
    body: dict[str, Any],
    headers: Mapping[str, str] | None = None,
) -> Streamed:
    """POST /ask and read the whole SSE stream (asserts a 200 text/event-stream answer)."""
    started = time.perf_counter()
    async with client.stream(
        "POST", "/ask", json=body, headers={**app.auth, **(headers or {})}
    ) as r:
        if r.status_code != 200:
            await r.aread()
            raise AssertionError(f"/ask answered {r.status_code}: {r.text}")
        assert r.headers["content-type"].startswith("text/event-stream"), r.headers
        blocks = [block async for block in sse_events(r)]
    for block in blocks:
        assert_no_traceback(block.data)
    return Streamed(r, blocks, started)


def assert_no_traceback(text: str) -> None:
    assert not _TRACEBACK.search(text), text
    assert "Traceback" not in text, text


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """A JSON error in the gateway's shape, with this status and code; its ``error`` object."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json"), response.headers
    assert_no_traceback(response.text)
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    # A quota refusal says whose limit it was: the app's (everyone's) or this user's.
    scoped = {"scope"} if code == "quota_exceeded" else set()
    assert set(error) == {"code", "message", "request_id", *scoped}, error
    assert error.get("scope", "app") in ("app", "user"), error
    assert error["code"] == code, error
    assert error["message"], error
    assert error["request_id"] == response.headers["x-request-id"], (error, response.headers)
    return error
