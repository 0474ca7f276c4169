"""OpenAI-compatible upstream over the gateway's own pooled HTTP/1.1 client (upstream/wire/).

Not the SDK on the hot path: it builds pydantic models for every chunk, which costs more than
the rest of the gateway together, and hides the raw bytes the /v1 routes forward; not httpx
either (see upstream/wire/). Every transport error is translated here, at the boundary, into the
``UpstreamError`` tree; nothing from the transport leaks upward.
"""

from __future__ import annotations

import asyncio
import json
import time
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import orjson
from loguru import logger

from gateway.core.errors import (
    UpstreamAuthFailed,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.core.redact import Redactor
from gateway.core.trace_context import upstream_traceparent
from gateway.upstream.proxy import ProxyRoutes
from gateway.upstream.sse import MESSAGE, EventTooLarge, SSEParser
from gateway.upstream.tunnel import TunnelRefused, egress_pool
from gateway.upstream.types import (
    MAX_FINISH_REASON,
    MAX_MODEL_NAME,
    ChatRequest,
    Chunk,
    Completion,
    Usage,
    short_text,
    usage_from,
)
from gateway.upstream.wire import (
    ConnectFailed,
    Pool,
    ProtocolViolation,
    ReadTimedOut,
    Response,
    WireError,
)

#: Where each API is, under the app's base URL.
_PATHS = {"chat": "chat/completions", "responses": "responses", "embeddings": "embeddings"}
#: The most a GET or DELETE answer may hold (a stored response, with its output).
_MAX_FETCHED = 16 * 1024 * 1024
_DONE = b"[DONE]"
_ERROR = b"error"
_ERROR_KEY = b'"error"'
#: The event types OpenAIStream hands out; others are skipped.
_HANDED_OUT = frozenset((MESSAGE, _ERROR))
DEFAULT_MAX_EVENT_BYTES = 1_048_576


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


_log = logger.opt(depth=0)


@lru_cache(maxsize=256)  # a handful of base URLs; parsed once each, not per call
def _without_credentials(url: str) -> str:
    """The URL as it may be logged: no user:password@, no query (keys have been put there)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}"


def _dumps(body: Any) -> bytes:
    try:
        return orjson.dumps(body)
    except TypeError:  # orjson refuses integers beyond 64 bits, which JSON (and json) allow
        return json.dumps(body, ensure_ascii=False).encode()


def _retry_after(response: Response) -> float | None:
    value = response.header(b"retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


#: Of an upstream's error message: how much is read (and redacted), how much is kept.
_MESSAGE_READ = 2000
#: What is read of a body after its [DONE] before the connection is given up instead.
_MAX_DRAIN_BYTES = 64 * 1024
_MESSAGE_KEPT = 300


def _upstream_message(body: bytes, redact: Redactor) -> str:
    """The upstream's own error message, without the key of the call (nor any secret shape).

    Upstreams repeat the key they were given ("Incorrect API key provided: …"), whole, masked
    or in part, whatever its form (OpenAI's sk-…, Azure's 32 hex digits, anything): ``redact``
    holds that key. Redacted before it is cut, so a cut never leaves a key's start behind.
    """
    try:
        message = orjson.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return ""
    return redact(str(message)[:_MESSAGE_READ])[:_MESSAGE_KEPT]


def _stream_error_detail(data: bytes, redact: Redactor) -> str:
    """The message of an upstream's error event or error chunk, redacted and cut."""
    try:
        body = orjson.loads(data)
    except ValueError:  # plain text
        return redact(data.decode(errors="replace").strip()[:_MESSAGE_READ])[:_MESSAGE_KEPT]
    error = body.get("error", body) if isinstance(body, dict) else body
    message = error.get("message") if isinstance(error, dict) else error
    return (
        redact(message.strip()[:_MESSAGE_READ])[:_MESSAGE_KEPT] if isinstance(message, str) else ""
    )


def _stream_error(data: bytes, redact: Redactor) -> UpstreamError:
    detail = _stream_error_detail(data, redact)
    suffix = f": {detail}" if detail else "."
    return UpstreamError(f"The upstream reported an error mid-stream{suffix}")


def _raise_if_error_chunk(payload: bytes, api_key: str) -> None:
    """``data: {"error": ...}`` (vLLM and other OpenAI-compatible servers) is no chunk."""
    if _ERROR_KEY not in payload:  # a search costs more than parsing a delta: only here
        return
    try:
        body = orjson.loads(payload)
    except ValueError:
        return  # parse_chunk calls it malformed
    if isinstance(body, dict) and body.get("error") is not None and not body.get("choices"):
        raise _stream_error(payload, Redactor(api_key))


def error_for_status(
    status: int, body: bytes, retry_after: float | None, redact: Redactor
) -> UpstreamError:
    """The error for an upstream's non-200 answer; ``redact`` holds the key of the call."""
    detail = _upstream_message(body, redact)
    suffix = f": {detail}" if detail else ""
    if status in (401, 403):
        return UpstreamAuthFailed(
            f"The upstream refused this app's provider key (HTTP {status}); "
            "the operator must update it with `orchestra keys set`."
        )
    if status == 429:
        return UpstreamRateLimited(
            f"The upstream is rate limiting this app (HTTP 429){suffix}", retry_after=retry_after
        )
    if status in (502, 503):
        return UpstreamUnavailable(f"The upstream is unavailable (HTTP {status}){suffix}")
    if status == 504:
        return UpstreamTimeout(f"The upstream timed out (HTTP 504){suffix}")
    if status < 500:
        rejected = UpstreamRejected(f"The upstream refused the request (HTTP {status}){suffix}")
        rejected.upstream_status = status
        return rejected
    return UpstreamError(f"The upstream answered HTTP {status}{suffix}")


def _transport_error(exc: WireError) -> UpstreamError:
    # A connect timeout too: a connection that never opens is an unreachable upstream
    # (retried, counted by the circuit breaker), not a slow answer.
    if isinstance(exc, TunnelRefused):
        return UpstreamError(str(exc))  # names the proxy and the upstream, no credentials
    if isinstance(exc, ConnectFailed):
        return UpstreamUnavailable("The upstream cannot be reached.")
    if isinstance(exc, ReadTimedOut):
        return UpstreamTimeout("The upstream did not answer in time.")
    if isinstance(exc, ProtocolViolation):
        return UpstreamError("The upstream sent an invalid HTTP answer.")
    return UpstreamError("The connection to the upstream failed.")


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
            raise _stream_error(payload, Redactor(self._api_key))
        if len(payload) < 16 and payload.strip() == _DONE:
            self._done = True
            self._events.clear()
            await self._drain(timeout)
            return None
        try:
            chunk = parse_chunk(payload)
        except (ValueError, KeyError, TypeError, AttributeError):
            _raise_if_error_chunk(payload, self._api_key)
            raise UpstreamError("The upstream sent a malformed stream event.") from None
        if not chunk.text and chunk.usage is None:  # no delta: an error chunk, perhaps
            _raise_if_error_chunk(payload, self._api_key)
        return chunk

    async def _read(self, timeout: float) -> None:
        try:
            block = await self._response.read(timeout)
        except ReadTimedOut:
            raise UpstreamTimeout(f"The upstream sent nothing for {timeout:g} s.") from None
        except WireError as exc:
            raise _transport_error(exc) from None
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


class OpenAIUpstream:
    """One connection pool for every app; each request carries its own key and base URL."""

    def __init__(
        self,
        *,
        connect_timeout: float,
        first_token_timeout: float,
        allowed_hosts: tuple[str, ...] = (),
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        proxies: ProxyRoutes | None = None,
        ca_bundle: str | None = None,
    ) -> None:
        self._first_token_timeout = first_token_timeout
        self._max_event_bytes = max_event_bytes
        # Every new connection goes through the SSRF guard, after DNS resolution (and
        # through the egress proxy, when one is configured for its origin).
        self._pool = egress_pool(
            allowed_hosts=allowed_hosts,
            connect_timeout=connect_timeout,
            proxies=proxies,
            ca_bundle=ca_bundle,
        )

    @property
    def pool(self) -> Pool:
        return self._pool

    async def _post(self, url: str, api_key: str, body: Any, *, accept: str) -> Response:
        headers: tuple[tuple[str, str], ...] = (
            ("Authorization", f"Bearer {api_key}"),
            ("Accept", accept),
        )
        traceparent = upstream_traceparent.get()
        if traceparent is not None:
            headers = (*headers, ("traceparent", traceparent))
        started = time.perf_counter()
        try:
            response = await self._pool.post(
                url, _dumps(body), headers, timeout=self._first_token_timeout
            )
        except WireError as exc:
            _log.debug("upstream POST {} failed: {}", _without_credentials(url), type(exc).__name__)
            raise
        # DEBUG: one line per upstream call, inside its request (the id comes from the context).
        _log.debug(
            "upstream POST {} -> {} in {:.1f} ms",
            _without_credentials(url),
            response.status,
            (time.perf_counter() - started) * 1000,
        )
        return response

    async def open_stream(self, request: ChatRequest) -> OpenAIStream:
        try:
            response = await self._post(
                f"{request.base_url}/{_PATHS[request.api]}",
                request.api_key,
                request.body(stream=True),
                accept="text/event-stream",
            )
            if response.status != 200:
                body = await response.read_all(self._first_token_timeout)
                raise error_for_status(
                    response.status, body, _retry_after(response), Redactor(request.api_key)
                )
        except ReadTimedOut:
            raise UpstreamTimeout("The upstream did not start answering in time.") from None
        except WireError as exc:
            raise _transport_error(exc) from None
        if request.api == "responses":
            from gateway.upstream.responses import ResponsesStream  # it builds on this module

            return ResponsesStream(response, self._max_event_bytes, request.api_key)
        return OpenAIStream(response, self._max_event_bytes, request.api_key)

    async def _call(self, url: str, api_key: str, body: Any, what: str) -> Any:
        """POST, and read the whole JSON answer within the first-token bound."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._first_token_timeout
        try:
            response = await self._post(url, api_key, body, accept="application/json")
            content = await response.read_all(max(0.0, deadline - loop.time()))
        except ReadTimedOut:
            raise UpstreamTimeout(f"The {what} did not answer in time.") from None
        except WireError as exc:
            raise _transport_error(exc) from None
        if response.status != 200:
            raise error_for_status(
                response.status, content, _retry_after(response), Redactor(api_key)
            )
        try:
            return orjson.loads(content)
        except ValueError:
            raise UpstreamError(f"The {what} sent a malformed answer.") from None

    async def complete(self, request: ChatRequest) -> Completion:
        data = await self._call(
            f"{request.base_url}/{_PATHS[request.api]}",
            request.api_key,
            request.body(stream=False),
            "upstream",
        )
        if request.api == "chat":
            return parse_completion(data, request.model)
        from gateway.upstream import responses  # it builds on this module

        parse = (
            responses.parse_response if request.api == "responses" else responses.parse_embeddings
        )
        return parse(data, request.model)

    async def fetch_json(self, method: str, url: str, api_key: str) -> Any:
        """GET or DELETE ``url``: its JSON answer; a non-200 raises like a POST's would."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._first_token_timeout
        headers = (("Authorization", f"Bearer {api_key}"), ("Accept", "application/json"))
        try:
            response = await self._pool.bodiless(
                method, url, headers, timeout=self._first_token_timeout
            )
            content = await response.read_all(max(0.0, deadline - loop.time()), _MAX_FETCHED)
        except ReadTimedOut:
            raise UpstreamTimeout("The upstream did not answer in time.") from None
        except WireError as exc:
            raise _transport_error(exc) from None
        _log.debug("upstream {} {} -> {}", method, _without_credentials(url), response.status)
        if response.status != 200:
            raise error_for_status(
                response.status, content, _retry_after(response), Redactor(api_key)
            )
        try:
            return orjson.loads(content)
        except ValueError:
            raise UpstreamError("The upstream sent a malformed answer.") from None

    async def moderate(self, base_url: str, api_key: str, text: str) -> bool:
        """Whether OpenAI's ``/moderations`` flags ``text``; raises UpstreamError subclasses."""
        data = await self._call(
            f"{base_url}/moderations", api_key, {"input": text}, "moderation endpoint"
        )
        try:
            return any(bool(result["flagged"]) for result in data["results"])
        except (KeyError, TypeError):
            raise UpstreamError("The moderation endpoint sent a malformed answer.") from None

    async def aclose(self) -> None:
        await self._pool.aclose()
