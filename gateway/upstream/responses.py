"""OpenAI's Responses API and embeddings, checked at the boundary like chat completions.

A Responses stream is named events (``event: response.output_text.delta``), each one's data an
object whose ``type`` repeats the name, and no ``[DONE]``: it ends after ``response.completed``
(or ``response.incomplete``). Every event is handed out as it came (the /v1 route forwards it);
the gateway reads only what it accounts for: the text deltas, the model, the usage. An
``error`` event or ``response.failed`` ends the answer as an UpstreamError (redacted message);
a body that ends before a terminal event is a cut answer, as a chat stream without ``[DONE]``.
"""

from __future__ import annotations

import orjson

from gateway.core.errors import UpstreamError
from gateway.core.redact import Redactor
from gateway.upstream.chat import OpenAIStream
from gateway.upstream.errors import stream_error
from gateway.upstream.sse import MESSAGE
from gateway.upstream.types import (
    MAX_FINISH_REASON,
    MAX_MODEL_NAME,
    Completion,
    ResponseEvent,
    Usage,
    short_text,
    token_count,
)

TEXT_DELTA = "response.output_text.delta"
TERMINAL = frozenset(("response.completed", "response.incomplete"))
FAILED = "response.failed"
#: The longest event type kept (OpenAI's are a few dotted words).
MAX_EVENT_TYPE = 100
#: The most embeddings one answer may hold (OpenAI takes at most 2048 inputs).
MAX_EMBEDDINGS = 4096


def _malformed(what: str) -> UpstreamError:
    return UpstreamError(f"The upstream sent a malformed answer ({what}).")


def responses_usage(data: object) -> Usage | None:
    """``{"input_tokens", "output_tokens"}`` as Usage, or None when absent or not counts."""
    if type(data) is not dict:
        return None
    prompt = token_count(data.get("input_tokens"))
    completion = token_count(data.get("output_tokens"))
    if prompt is None or completion is None:
        return None
    return Usage(prompt_tokens=prompt, completion_tokens=completion)


def parse_event(payload: bytes) -> ResponseEvent:
    """One streamed event; its type and the fields the gateway reads are checked."""
    try:
        data = orjson.loads(payload)
    except ValueError:
        raise _malformed("an event is not JSON") from None
    if type(data) is not dict:
        raise _malformed("an event is not an object")
    kind = data.get("type")
    if type(kind) is not str or not kind or len(kind) > MAX_EVENT_TYPE or not kind.isprintable():
        raise _malformed("an event has no valid type")
    raw = payload.decode()
    if kind == TEXT_DELTA:
        delta = data.get("delta")
        if type(delta) is not str:
            raise _malformed("a text delta is not text")
        return ResponseEvent(raw=raw, text=delta, event=kind)
    response = data.get("response")
    if response is None:
        return ResponseEvent(raw=raw, event=kind)
    if type(response) is not dict:
        raise _malformed("'response' is not an object")
    usage = responses_usage(response.get("usage")) if kind in TERMINAL else None
    return ResponseEvent(
        raw=raw,
        event=kind,
        model=short_text(response.get("model"), MAX_MODEL_NAME),
        usage=usage,
        finish_reason=short_text(response.get("status"), MAX_FINISH_REASON)
        if kind in TERMINAL
        else None,
    )


def output_text(response: dict[str, object]) -> str:
    """The text of a response object's message items (their ``output_text`` parts)."""
    output = response.get("output")
    if output is None:
        return ""
    if type(output) is not list:
        raise _malformed("'output' is not a list")
    parts: list[str] = []
    for item in output:
        if type(item) is not dict or item.get("type") != "message":
            continue
        content = item.get("content")
        if type(content) is not list:
            raise _malformed("a message's content is not a list")
        for part in content:
            if type(part) is dict and part.get("type") == "output_text":
                text = part.get("text")
                if type(text) is not str:
                    raise _malformed("an output text is not text")
                parts.append(text)
    return "".join(parts)


def parse_response(data: object, requested_model: str) -> Completion:
    """A whole ``response`` object (created, retrieved): its text, model, status and usage."""
    if type(data) is not dict or type(data.get("id")) is not str:
        raise _malformed("not a response object")
    model = short_text(data.get("model"), MAX_MODEL_NAME) or requested_model
    return Completion(
        raw=data,
        text=output_text(data),
        finish_reason=short_text(data.get("status"), MAX_FINISH_REASON),
        model=model,
        usage=responses_usage(data.get("usage")) or Usage(),
    )


def _is_vector(value: object) -> bool:
    if type(value) is str:  # encoding_format "base64"
        return True
    return type(value) is list and all(type(v) is float or type(v) is int for v in value)


def parse_embeddings(data: object, requested_model: str) -> Completion:
    """An embeddings list: a bounded list of vectors (numbers or base64), and its usage."""
    if type(data) is not dict:
        raise _malformed("not an object")
    items = data.get("data")
    if type(items) is not list or len(items) > MAX_EMBEDDINGS:
        raise _malformed("'data' is not a list of embeddings")
    for item in items:
        if type(item) is not dict or not _is_vector(item.get("embedding")):
            raise _malformed("an embedding is not a vector")
    usage = data.get("usage")
    prompt = token_count(usage.get("prompt_tokens")) if type(usage) is dict else None
    return Completion(
        raw=data,
        text="",
        finish_reason=None,
        model=short_text(data.get("model"), MAX_MODEL_NAME) or requested_model,
        usage=Usage(prompt_tokens=prompt or 0),
    )


class ResponsesStream(OpenAIStream):
    """A Responses API stream: every event handed out, until the terminal one."""

    handed_out = None  # every event type
    _terminal = False

    async def next_chunk(self, timeout: float) -> ResponseEvent | None:
        while not self._events:
            if self._terminal:
                await self._drain(timeout)
                return None
            await self._read(timeout)
        event_type, payload, _ = self._events.popleft()
        if event_type == b"error":
            raise stream_error(payload, Redactor(self._api_key))
        event = parse_event(payload)
        if event.event == "error":
            raise stream_error(payload, Redactor(self._api_key))
        if event.event == FAILED:
            raise _failed(payload, self._api_key)
        if event_type is not MESSAGE and event_type.decode(errors="replace") != event.event:
            raise _malformed("an event's name and type differ")
        if event.event in TERMINAL:
            self._terminal = True
        return event


def _failed(payload: bytes, api_key: str) -> UpstreamError:
    """``response.failed``: its ``response.error.message``, redacted."""
    try:
        error = orjson.loads(payload)["response"]["error"]
    except (ValueError, KeyError, TypeError):
        error = None
    return stream_error(orjson.dumps({"error": error}), Redactor(api_key))
