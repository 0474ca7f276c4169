"""Reading Server-Sent Events as a client: exact framing, with each block's arrival time (to
prove incremental delivery)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class SSEEvent:
    """One SSE block: an event (``name``, ``data``) or a comment (``name`` None)."""

    name: str | None
    data: str
    at: float  # time.perf_counter() when the block was complete
    id: int | None = None  # the `id:` field (every /ask event has one)

    @property
    def json(self) -> Any:
        return json.loads(self.data)

    @property
    def is_comment(self) -> bool:
        return self.name is None


def parse_block(block: str, at: float) -> SSEEvent:
    """One block as the gateway frames it (``event:`` then ``data:`` lines, or comments)."""
    lines = block.split("\n")
    if all(line.startswith(":") for line in lines):
        return SSEEvent(None, "\n".join(line[1:].strip() for line in lines), at)
    name: str | None = None
    event_id: int | None = None
    data: list[str] = []
    for line in lines:
        if line.startswith("id: "):
            assert event_id is None, block
            event_id = int(line.removeprefix("id: "))
        elif line.startswith("event: "):
            assert name is None, block
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            data.append(line.removeprefix("data: "))
        else:
            raise AssertionError(f"unexpected SSE line {line!r} in {block!r}")
    assert name is not None and data, block
    return SSEEvent(name, "\n".join(data), at, event_id)


async def sse_events(response: httpx.Response) -> AsyncIterator[SSEEvent]:
    """The blocks of an SSE body as they arrive, with their arrival time; exact framing."""
    buffer = ""
    async for text in response.aiter_text():
        buffer += text
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            yield parse_block(block, time.perf_counter())
    assert buffer == "", f"bytes after the last event: {buffer!r}"


async def read_until_cut(response: httpx.Response) -> tuple[list[SSEEvent], str | None]:
    """Every complete block, and why the body ended early (None when it ended cleanly)."""
    events: list[SSEEvent] = []
    buffer = ""
    try:
        async for text in response.aiter_text():
            buffer += text
            while "\n\n" in buffer:
                block, buffer = buffer.split("\n\n", 1)
                events.append(parse_block(block, time.perf_counter()))
    except httpx.HTTPError as exc:
        return events, f"{type(exc).__name__}: {exc}"
    return events, (f"bytes after the last event: {buffer!r}" if buffer else None)
