"""Chat completions at the boundary: a stream's chunks and a whole answer, parsed and checked.

``OpenAIStream`` reads the upstream's SSE body; ``parse_chunk`` and ``parse_completion`` make
sure the gateway never sees a wrong type. Errors become the ``UpstreamError`` tree
(``upstream.errors``).
"""

from __future__ import annotations

import orjson

from gateway.core.errors import UpstreamError, UpstreamTimeout
from gateway.core.redact import Redactor
from gateway.upstream.errors import stream_error, transport_error
from gateway.upstream.sse import MESSAGE, EventTooLarge, SSEParser
from gateway.upstream.types import (
    MAX_FINISH_REASON,
    MAX_MODEL_NAME,
    Chunk,
    Completion,
    Usage,
    short_text,
    usage_from,
)
from gateway.upstream.wire import ReadTimedOut, Response, WireError

_DONE = b"[DONE]"
_ERROR = b"error"
_ERROR_KEY = b'"error"'
#: The event types OpenAIStream hands out; others are skipped.
_HANDED_OUT = frozenset((MESSAGE, _ERROR))
DEFAULT_MAX_EVENT_BYTES = 1_048_576
#: What is read of a body after its [DONE] before the connection is given up instead.
_MAX_DRAIN_BYTES = 64 * 1024


def _malformed_event(what: str) -> UpstreamError:
    return UpstreamError(f"The upstream sent a malformed stream event ({what}).")


def parse_chunk(payload: bytes) -> Chunk:
    """One stream event, checked at the boundary: the gateway never sees a wrong type.

    Cheap explicit checks (this runs per event), no model: ``model`` and ``finish_reason`` that
    are not strings are ignored (the requested model stands), a usage that is not valid counts
    is unreported (see ``usage_from``), and content that is not text (a number, an object) is a
    malformed event, an UpstreamError: coercing it would hand /v1 clients, which get the raw
    chunk, something else than /ask clients, and an answer that is not text is not an answer.
    """
    data = orjson.loads(payload)
    if type(data) is not dict:
        raise _malformed_event("not an object")
    raw = payload.decode()
    usage_data = data.get("usage")
    usage = None if usage_data is None else usage_from(usage_data)
    model = data.get("model")  # short_text(), inlined: this runs per event
    if type(model) is not str:
        model = None
    elif len(model) > MAX_MODEL_NAME:
        model = model[:MAX_MODEL_NAME]
    choices = data.get("choices")
    if not choices:
        return Chunk(raw=raw, model=model, usage=usage, usage_only=usage_data is not None)
    if type(choices) is not list or type(choice := choices[0]) is not dict:
        raise _malformed_event("choices")
    delta = choice.get("delta")
    text = ""
    if delta is not None:
        if type(delta) is not dict:
            raise _malformed_event("delta is not an object")
        content = delta.get("content")
        if content is not None:
            if type(content) is not str:
                raise _malformed_event("content is not text")
            text = content
    finish_reason = choice.get("finish_reason")
    if finish_reason is not None and (
        type(finish_reason) is not str or len(finish_reason) > MAX_FINISH_REASON
    ):
        finish_reason = short_text(finish_reason, MAX_FINISH_REASON)
    return Chunk(raw=raw, text=text, finish_reason=finish_reason, model=model, usage=usage)


def parse_completion(data: object, requested_model: str) -> Completion:
    """A whole non-streamed answer, checked like ``parse_chunk`` (content must be text)."""
    malformed = UpstreamError("The upstream sent a malformed answer.")
    if type(data) is not dict:
        raise malformed
    choices = data.get("choices")
    if type(choices) is not list or not choices or type(choice := choices[0]) is not dict:
        raise malformed
    message = choice.get("message")
    if message is None:
        message = {}
    elif type(message) is not dict:
        raise malformed
    text = message.get("content")
    if text is None:
        text = ""
    elif type(text) is not str:
        raise malformed
    model = short_text(data.get("model"), MAX_MODEL_NAME) or requested_model
    reported = data.get("usage")
    usage = usage_from(reported) or Usage()
    # The /v1 route sends ``raw`` back as it is: it must say what was counted. (It encodes:
    # orjson reads an integer past 64 bits as a float.)
    raw = data
    if data.get("model") != model or (reported is not None and not _reports(reported, usage)):
        raw = {**data, "model": model}
        if reported is not None:
            raw["usage"] = usage.to_json()
    return Completion(
        raw=raw,
        text=text,
        finish_reason=short_text(choice.get("finish_reason"), MAX_FINISH_REASON),
        model=model,
        usage=usage,
    )


def _reports(data: object, usage: Usage) -> bool:
    """Whether the upstream's usage object says exactly ``usage`` (then it is kept as sent)."""
    return (
        type(data) is dict
        and data.get("prompt_tokens") == usage.prompt_tokens
        and data.get("completion_tokens") == usage.completion_tokens
        and data.get("total_tokens", usage.total_tokens) == usage.total_tokens
    )


def raise_if_error_chunk(payload: bytes, api_key: str) -> None:
    """``data: {"error": ...}`` (vLLM and other OpenAI-compatible servers) is no chunk."""
    if _ERROR_KEY not in payload:  # a search costs more than parsing a delta: only here
        return
    try:
        body = orjson.loads(payload)
    except ValueError:
        return  # parse_chunk calls it malformed
    if isinstance(body, dict) and body.get("error") is not None and not body.get("choices"):
        raise stream_error(payload, Redactor(api_key))


class OpenAIStream:
    """The upstream's SSE body, parsed from raw network reads (``sse.SSEParser``).

    One deadline (first token, then idle) per network read rather than per event: a read
    often carries many events, and they are handed out without waiting again.

    Unnamed (``message``) events carry the chunks, and ``[DONE]``; an ``error`` event ends the
    answer with its (redacted) message; other named events are not part of OpenAI's stream
    and are skipped, as an EventSource's ``onmessage`` would.
    """

    #: The event types handed out (None: all of them).
    handed_out: frozenset[bytes] | None = _HANDED_OUT

    def __init__(
        self,
        response: Response,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        api_key: str = "",
    ) -> None:
        self._response = response
        #: An error event may repeat the call's key: its redactor is built on that path only.
        self._api_key = api_key
        self._parser = SSEParser(max_event_bytes, self.handed_out)
        self._events = self._parser.events
        self._done = False

    def ready(self) -> bool:
        return bool(self._events)

    async def next_chunk(self, timeout: float) -> Chunk | None:
        while not self._events:
            if self._done:
                return None
            await self._read(timeout)
        event_type, payload, _ = self._events.popleft()
        if event_type is not MESSAGE and event_type == _ERROR:  # unnamed: the parser's MESSAGE
            raise stream_error(payload, Redactor(self._api_key))
        if len(payload) < 16 and payload.strip() == _DONE:
            self._done = True
            self._events.clear()
            await self._drain(timeout)
            return None
        try:
            chunk = parse_chunk(payload)
        except (ValueError, KeyError, TypeError, AttributeError):
            raise_if_error_chunk(payload, self._api_key)
            raise UpstreamError("The upstream sent a malformed stream event.") from None
        if not chunk.text and chunk.usage is None:  # no delta: an error chunk, perhaps
            raise_if_error_chunk(payload, self._api_key)
        return chunk

    async def _read(self, timeout: float) -> None:
        try:
            block = await self._response.read(timeout)
        except ReadTimedOut:
            raise UpstreamTimeout(f"The upstream sent nothing for {timeout:g} s.") from None
        except WireError as exc:
            raise transport_error(exc) from None
        if not block:
            # The body ended without [DONE]: the answer is cut, not complete.
            raise UpstreamError("The upstream stream ended before it was complete.")
        try:
            self._parser.feed(block)
        except EventTooLarge as exc:
            raise UpstreamError(
                f"The upstream sent a stream event larger than {exc.limit} bytes."
            ) from None

    async def _drain(self, timeout: float) -> None:
        """Read the end of the body after [DONE], so the connection goes back to the pool.

        Closing a response that was not read to its end closes its connection, and every
        answer would then pay a new TCP (and TLS) handshake to the upstream.
        """
        left = _MAX_DRAIN_BYTES  # an upstream that keeps talking after [DONE] is cut off
        try:
            while left > 0 and (block := await self._response.read(timeout)):
                left -= len(block)
        except WireError:
            self._response.close()
            return
        if left <= 0:
            self._response.close()

    async def aclose(self) -> None:
        # Read to its end: the connection goes back to the pool; otherwise it is closed,
        # which tells the upstream to stop generating (and billing).
        self._response.close()
