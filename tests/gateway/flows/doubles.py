"""In-process stand-ins for the upstream (chat and moderation), for the flows' unit tests."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import anyio

from gateway.core.errors import UpstreamError
from gateway.upstream.types import ChatRequest, Chunk, Completion, Usage


def chunk(text: str) -> Chunk:
    return Chunk(raw=json.dumps({"text": text}), text=text, model="gpt-4o-mini")


@dataclass
class ScriptedStream:
    """Sends ``texts`` one per ``delay`` seconds, then a usage chunk; records being closed."""

    texts: list[str]
    delay: float = 0.0
    fail_after: int | None = None
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
        if self.sent == len(self.texts):
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
    """Every stream answers ``texts``; keeps every request and stream it was given."""

    texts: list[str] = field(default_factory=lambda: ["one ", "two ", "three "])
    delay: float = 0.0
    fail_after: int | None = None
    requests: list[ChatRequest] = field(default_factory=list)
    streams: list[ScriptedStream] = field(default_factory=list)

    async def open_stream(self, request: ChatRequest) -> ScriptedStream:
        self.requests.append(request)
        stream = ScriptedStream(list(self.texts), self.delay, self.fail_after)
        self.streams.append(stream)
        return stream

    async def complete(self, request: ChatRequest) -> Completion:
        raise NotImplementedError

    async def aclose(self) -> None:
        return None


@dataclass
class WordModerator:
    """Flags any text containing FLAGGED, like the project's fake."""

    texts: list[str] = field(default_factory=list)

    async def moderate(self, base_url: str, api_key: str, text: str) -> bool:
        self.texts.append(text)
        return "FLAGGED" in text


def request(*messages: dict[str, str], model: str = "gpt-4o-mini") -> ChatRequest:
    return ChatRequest(
        base_url="http://upstream.test/v1",
        api_key="sk-test",
        model=model,
        messages=list(messages),
        max_tokens=100,
    )


def user(content: str) -> dict[str, str]:
    return {"role": "user", "content": content}


def assistant(content: str) -> dict[str, str]:
    return {"role": "assistant", "content": content}


def system(content: str) -> dict[str, str]:
    return {"role": "system", "content": content}
