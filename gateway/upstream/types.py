"""What the gateway asks an upstream, and what comes back, in its own terms."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

#: Which OpenAI endpoint a request goes to: chat completions, the Responses API, embeddings.
Api = Literal["chat", "responses", "embeddings"]

#: The most tokens one answer may count (prompt or completion), whatever the upstream says.
#: A trillion is far beyond any context window, stays exact in JavaScript clients (< 2**53), and
#: keeps sums over millions of records inside the 64-bit columns and Redis counters (2**63 - 1).
MAX_TOKEN_COUNT = 10**12
#: Longest model name kept (the width of the request_logs column).
MAX_MODEL_NAME = 200
#: Longest ``finish_reason`` kept (OpenAI's are a word: stop, length, tool_calls ...).
MAX_FINISH_REASON = 40


def token_count(value: object) -> int | None:
    """An upstream's token count as a count, or None when it is not one.

    Deliberate cases: a missing count (None) is 0; an int is clamped to MAX_TOKEN_COUNT; a float
    is taken only when it is a whole number (some servers send 12.0); a negative number, a
    fraction, a bool, a string or any other JSON value is not a count (None), and the caller
    treats the whole usage as unreported rather than guessing.
    """
    if value is None:
        return 0
    if type(value) is int:  # bool is a subclass of int and is refused here
        if value < 0:
            return None
        return value if value <= MAX_TOKEN_COUNT else MAX_TOKEN_COUNT
    if type(value) is float and math.isfinite(value) and value.is_integer() and value >= 0:
        return min(int(value), MAX_TOKEN_COUNT)
    return None


def short_text(value: object, limit: int) -> str | None:
    """A string field cut to ``limit`` characters; anything that is not a string is None."""
    if type(value) is not str:
        return None
    return value if len(value) <= limit else value[:limit]


@dataclass(frozen=True, slots=True)
class ChatRequest:
    base_url: str
    #: Never in a repr (a traceback or an error quoting the request would show it).
    api_key: str = field(repr=False)
    model: str
    messages: list[dict[str, Any]]
    max_tokens: int | None = None
    temperature: float | None = None
    #: Other OpenAI fields passed through as they are (the /v1 route).
    extra: dict[str, Any] = field(default_factory=dict)
    #: Models to try, in order, when ``model`` keeps failing before the first byte.
    fallback_models: tuple[str, ...] = ()
    api: Api = "chat"

    def body(self, *, stream: bool) -> dict[str, Any]:
        if self.api != "chat":
            return self._other_body(stream=stream)
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

    def _other_body(self, *, stream: bool) -> dict[str, Any]:
        if self.api == "embeddings":  # the input is in ``extra`` as it came; messages count it
            return {**self.extra, "model": self.model}
        # The Responses API: the messages (with the app's system prompt) are its input items.
        body: dict[str, Any] = {**self.extra, "model": self.model, "input": self.messages}
        if self.max_tokens is not None:
            body["max_output_tokens"] = self.max_tokens
        if self.temperature is not None:
            body["temperature"] = self.temperature
        body["stream"] = stream
        return body


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts, each in 0..MAX_TOKEN_COUNT (``usage_from`` builds it from upstream JSON)."""

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


@dataclass(slots=True)
class ResponseEvent(Chunk):
    """One streamed Responses API event; ``raw`` is its data, ``event`` its type."""

    event: str = ""


@dataclass(frozen=True, slots=True)
class Completion:
    """A whole non-streamed answer."""

    raw: dict[str, Any]
    text: str
    finish_reason: str | None
    model: str
    usage: Usage


def usage_from(data: object) -> Usage | None:
    """The ``usage`` object of an upstream answer, or None when it is absent or not valid.

    Invalid (a count that is negative, a string, an object ...) means unreported: the gateway
    then counts the answer itself (prompt estimate, streamed chunks), as for a cut stream. A
    negative count clamped to 0 would make an answer free; 10**30 is clamped to MAX_TOKEN_COUNT.
    """
    if type(data) is not dict:
        return None
    prompt = token_count(data.get("prompt_tokens"))
    completion = token_count(data.get("completion_tokens"))
    if prompt is None or completion is None:
        return None
    return Usage(prompt_tokens=prompt, completion_tokens=completion)
