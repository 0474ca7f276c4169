"""What the gateway asks an upstream, and what comes back, in its own terms."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class ChatRequest:
    base_url: str
    api_key: str
    model: str
    messages: list[dict[str, Any]]
    max_tokens: int | None = None
    temperature: float | None = None
    #: Other OpenAI fields passed through as they are (the /v1 route).
    extra: dict[str, Any] = field(default_factory=dict)
    #: Models to try, in order, when ``model`` keeps failing before the first byte.
    fallback_models: tuple[str, ...] = ()

    def body(self, *, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {**self.extra, "model": self.model, "messages": self.messages}
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        if self.temperature is not None:
            body["temperature"] = self.temperature
        body["stream"] = stream
        if stream:
            body["stream_options"] = {"include_usage": True}
        else:
            body.pop("stream_options", None)
        return body


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_json(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


# Not frozen: one is built per stream event, and a frozen __init__ costs twice as much
# (object.__setattr__ per field). Nothing changes a chunk after parse_chunk.
@dataclass(slots=True)
class Chunk:
    """One parsed upstream stream event.

    ``raw`` is the JSON text as received, so OpenAI-compatible routes can forward it untouched.
    """

    raw: str
    text: str = ""
    finish_reason: str | None = None
    model: str | None = None
    usage: Usage | None = None
    #: True for the usage-only chunk (``choices: []``) that include_usage adds at the end.
    usage_only: bool = False


@dataclass(frozen=True, slots=True)
class Completion:
    """A whole non-streamed answer."""

    raw: dict[str, Any]
    text: str
    finish_reason: str | None
    model: str
    usage: Usage
