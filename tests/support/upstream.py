"""A scripted upstream: an in-process ``UpstreamClient`` whose streams say what the test wrote.

For unit tests of what sits on the upstream (the flows, ``services.ask``); tests of the wire
use the fake OpenAI server instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import anyio

from gateway.core.errors import GatewayError, UpstreamError
from gateway.upstream.types import ChatRequest, Chunk, Completion, Usage


def chunk(text: str) -> Chunk:
    return Chunk(raw=json.dumps({"text": text}), text=text, model="gpt-4o-mini")


@dataclass
class ScriptedStream:
    """Sends ``texts`` one per ``delay`` seconds, then a usage chunk; records being closed.

    ``fail_after``: raise UpstreamError after that many texts; ``report_usage=False``: end
    without the usage chunk (an upstream that does not report it).
    """

    texts: list[str]
    delay: float = 0.0
    fail_after: int | None = None
    report_usage: bool = True
    sent: int = 0
    closed: bool = False
    timeouts: list[float] = field(default_factory=list)

    async def next_chunk(self, timeout: float) -> Chunk | None:
        self.timeouts.append(timeout)
        with anyio.fail_after(timeout):
            await anyio.sleep(self.delay)
        if self.fail_after is not None and self.sent == self.fail_after:
            raise UpstreamError("the scripted upstream failed")
        if self.sent < len(self.texts):
            self.sent += 1
            return chunk(self.texts[self.sent - 1])
        if self.sent == len(self.texts) and self.report_usage:
            self.sent += 1
            usage = Usage(prompt_tokens=10, completion_tokens=len(self.texts))
            return Chunk(raw="{}", usage=usage, usage_only=True)
        return None

    def ready(self) -> bool:
        return False  # every chunk waits for its delay

    async def aclose(self) -> None:
        self.closed = True


@dataclass
class ScriptedUpstream:
    """Every stream answers ``texts``; keeps every request and stream it was given.

    ``open_error``: raised by ``open_stream`` (the upstream refused before any byte).
    """

    texts: list[str] = field(default_factory=lambda: ["one ", "two ", "three "])
    delay: float = 0.0
    fail_after: int | None = None
    report_usage: bool = True
    open_error: GatewayError | None = None
    requests: list[ChatRequest] = field(default_factory=list)
    streams: list[ScriptedStream] = field(default_factory=list)

    async def open_stream(self, request: ChatRequest) -> ScriptedStream:
        self.requests.append(request)
        if self.open_error is not None:
            raise self.open_error
        stream = ScriptedStream(list(self.texts), self.delay, self.fail_after, self.report_usage)
        self.streams.append(stream)
        return stream

    async def complete(self, request: ChatRequest) -> Completion:
        raise NotImplementedError

    async def fetch_json(self, method: str, url: str, api_key: str) -> Any:
        raise NotImplementedError

    async def aclose(self) -> None:
        return None
