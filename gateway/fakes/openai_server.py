"""An OpenAI-compatible fake server for tests, benchmarks and the demo (never call the real one).

A raw ASGI app (no framework, pre-encoded bytes) so it is never the bottleneck of a benchmark.

Endpoints (all ``/v1`` ones need ``Authorization: Bearer <key>``; with ``api_keys=None`` any key
starting with ``sk-`` is accepted, otherwise only the configured ones; a missing or refused key
gets OpenAI's 401 ``invalid_api_key`` body, with the key masked, never echoed):

- ``POST /v1/chat/completions``: OpenAI's ``chat.completion`` object, or with ``"stream": true``
  ``text/event-stream`` chunks exactly like OpenAI: a role chunk, one chunk per content token
  (``"word "``), a chunk with an empty delta and the finish reason (``"length"`` when
  ``max_completion_tokens``/``max_tokens`` is below the token count), the usage chunk when
  ``stream_options.include_usage`` is true (then ``"usage": null`` is on every other chunk), and
  ``data: [DONE]``. Unknown models answer 404 ``model_not_found``; malformed JSON and missing or
  invalid parameters answer 400. The answer and ``prompt_tokens`` are deterministic functions of
  the messages (see :mod:`gateway.fakes.prompt`); ``completion_tokens`` is the number of content
  chunks produced. With ``answers="readable"`` the answer is instead a Markdown document chosen
  from the prompt (heading, list, table, fenced code; see :mod:`gateway.fakes.readable`), in
  small chunks, whatever ``tokens`` says. Content chunk ``i`` (from 0) is sent
  ``first_token_ms + i * token_ms`` after the role chunk (chunks due at the same moment share
  one write, so with 0 ms delays the whole answer is one write); a non-streamed answer is sent
  when its last chunk would have been.
- ``POST /v1/moderations``: OpenAI's moderation object, one result per input string; a result is
  flagged (category ``harassment``) when its text contains the word ``FLAGGED`` (case-sensitive).
- ``POST /v1/responses`` (streamed or not), ``GET``/``DELETE /v1/responses/{id}``: the Responses
  API with the chat answer, OpenAI's event types and SSE framing (see
  :mod:`gateway.fakes.responses`).
- ``POST /v1/embeddings``: deterministic unit vectors, float or base64 (see
  :mod:`gateway.fakes.embeddings`).
- ``GET /v1/models`` and ``GET /v1/models/{id}``: the configured models, in OpenAI's format.
- ``GET /_fake/requests``: the received chat/moderation requests, oldest first (see
  :class:`gateway.fakes.recorder.RequestRecord`); ``DELETE /_fake/requests`` clears them.
  ``GET /_fake/health`` answers ``{"status": "ok"}``. These need no key.

Directives, written anywhere in the LAST user message (moderations: in the input, only
``fail`` and ``hang``):

- ``[fail:STATUS]`` (e.g. 401, 429, 500, 503, any HTTP status >= 400): answer that status with
  OpenAI's error body before any byte of the answer; 429 carries ``Retry-After: 1``.
- ``[die-after:N]``: send N content chunks (non-stream: half the body), then drop the
  connection without the finish chunk and ``[DONE]``; recorded as ``failed``.
- ``[hang]``: send the stream headers (non-stream: nothing), then nothing until the client
  disconnects; recorded as ``cancelled``.
- ``[tokens:N]``: answer N content chunks instead of ``tokens`` (at most 100000); readable
  answers: their first N chunks.
- ``[token-ms:MS]`` and ``[first-token-ms:MS]``: override ``token_ms`` / ``first_token_ms``.
- ``[ignore-max-tokens]``: answer the full token count even past ``max_tokens`` (an upstream
  that overshoots, to test the gateway's hard cap).
- ``[xss]``: the answer is exactly ``<img src=x onerror=alert(1)>``, split across 4 chunks.

``fail_rate`` applies on top: every chat/moderation request that passes auth and validation
draws once from ``random.Random(seed)`` and gets a 500 when the draw is below ``fail_rate``
(a ``[fail:N]`` directive wins over the draw). A client that disconnects stops the answer at
once (a watcher task waits for ``http.disconnect`` and cancels the handler); the record becomes
``cancelled`` with ``ended_at`` set. The log keeps the full ``Authorization`` header: test-only.
"""

from __future__ import annotations

import json
import logging
import random
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.fakes import encoding, errors
from gateway.fakes.asgi import (
    ASGIApp,
    Receive,
    Scope,
    Send,
    new_id,
    parse_json,
    read_body,
    run_blocking,
    send_bytes,
    send_error,
)
from gateway.fakes.chat import handle_chat
from gateway.fakes.embeddings import handle_embeddings
from gateway.fakes.errors import ApiError
from gateway.fakes.moderation import handle_moderation
from gateway.fakes.recorder import RequestLog, RequestRecord, traceparent_of
from gateway.fakes.responses import StoredResponses, handle_create, handle_stored

__all__ = ["ASGIApp", "FakeOpenAIApp", "FakeOpenAIConfig", "create_app", "serve"]

_ABORT_LOG = "ASGI callable returned without completing response."
ANSWER_MODES = ("random", "readable")


@dataclass(frozen=True, slots=True)
class FakeOpenAIConfig:
    """Behaviour of one fake server instance."""

    tokens: int = 50
    first_token_ms: float = 0.0
    token_ms: float = 0.0
    fail_rate: float = 0.0
    api_keys: frozenset[str] | None = None
    models: tuple[str, ...] = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini")
    seed: int = 0
    record_limit: int = 1000
    #: ``random``: vocabulary words (tests, benchmarks); ``readable``: Markdown documents (demo).
    answers: str = "random"

    def __post_init__(self) -> None:
        if self.tokens < 0 or self.record_limit < 0:
            raise ValueError("tokens and record_limit must be >= 0")
        if self.first_token_ms < 0 or self.token_ms < 0:
            raise ValueError("first_token_ms and token_ms must be >= 0")
        if not 0.0 <= self.fail_rate <= 1.0:
            raise ValueError("fail_rate must be within [0, 1]")
        if self.answers not in ANSWER_MODES:
            raise ValueError(f"answers must be one of {', '.join(ANSWER_MODES)}")


def _hide_deliberate_abort(record: logging.LogRecord) -> bool:
    return record.getMessage() != _ABORT_LOG


class FakeOpenAIApp:
    """The ASGI callable; all state (request log, RNG) lives in the instance."""

    def __init__(self, config: FakeOpenAIConfig) -> None:
        self.config = config
        self.requests = RequestLog(config.record_limit)
        self._rng = random.Random(config.seed)
        self._models_body = encoding.model_list(config.models)
        self.responses = StoredResponses(config.record_limit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    @staticmethod
    async def _lifespan(receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        method: str = scope["method"]
        path: str = scope["path"].rstrip("/") or "/"
        if method == "POST" and path == "/v1/chat/completions":
            await handle_chat(self, scope, receive, send)
        elif method == "POST" and path == "/v1/moderations":
            await handle_moderation(self, scope, receive, send)
        elif method == "POST" and path == "/v1/responses":
            await handle_create(self, scope, receive, send)
        elif method in ("GET", "DELETE") and path.startswith("/v1/responses/"):
            await handle_stored(self, scope, send, path.removeprefix("/v1/responses/"))
        elif method == "POST" and path == "/v1/embeddings":
            await handle_embeddings(self, scope, receive, send)
        elif method == "GET" and (path == "/v1/models" or path.startswith("/v1/models/")):
            await self._models(scope, send, path.removeprefix("/v1/models").lstrip("/"))
        elif path == "/_fake/requests" and method in ("GET", "DELETE"):
            if method == "DELETE":
                cleared = len(self.requests)
                self.requests.clear()
                await send_bytes(send, 200, json.dumps({"cleared": cleared}).encode())
            else:
                await send_bytes(send, 200, json.dumps(self.requests.to_json()).encode())
        elif method == "GET" and path == "/_fake/health":
            await send_bytes(send, 200, b'{"status":"ok"}')
        else:
            await send_error(send, errors.invalid_url(method, scope["path"]))

    async def begin(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        id_prefix: str,
        validate: Callable[[bool, Any], ApiError | None],
        streams: bool = False,
    ) -> tuple[RequestRecord, Any, str] | None:
        """What every endpoint does first: authorize, record the request, read and validate its
        JSON body. ``(record, body, key)``, or None once the request is answered (an error) or
        gone (the client left before its body arrived)."""
        header, key, error = self.authorize(scope)
        record = RequestRecord(
            new_id(id_prefix), scope["path"], header, traceparent=traceparent_of(scope)
        )
        self.requests.add(record)
        raw = await read_body(receive)
        if raw is None:
            record.finish("cancelled")
            return None
        valid, body = parse_json(raw)
        record.body = body
        if streams:
            record.stream = isinstance(body, dict) and body.get("stream") is True
        if error is None:
            error = validate(valid, body)
        if error is not None:
            await send_error(send, error, record)
            return None
        return record, body, key

    def authorize(self, scope: Scope) -> tuple[str | None, str, ApiError | None]:
        """``(Authorization header, key, error)`` for the request's bearer key."""
        header = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                header = value.decode("latin-1")
        scheme, _, key = (header or "").partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            return header, key, errors.missing_api_key()
        keys = self.config.api_keys
        valid = key.startswith("sk-") if keys is None else key in keys
        return header, key, None if valid else errors.invalid_api_key(key)

    def injected_error(self, status: int | None, *, key: str, model: str) -> ApiError | None:
        """The error forced by a ``[fail:N]`` directive or drawn by ``fail_rate``, if any."""
        random_failure = self._rng.random() < self.config.fail_rate
        if status is not None:
            return errors.for_status(status, key=key, model=model)
        return errors.server_error() if random_failure else None

    async def _models(self, scope: Scope, send: Send, model: str) -> None:
        _, _, error = self.authorize(scope)
        if error is None and model and model not in self.config.models:
            error = errors.model_not_found(model)
        if error is not None:
            await send_error(send, error)
        elif model:
            await send_bytes(send, 200, json.dumps(encoding.model_object(model)).encode())
        else:
            await send_bytes(send, 200, self._models_body)


def create_app(config: FakeOpenAIConfig) -> ASGIApp:
    """A new fake server app (its own request log and RNG).

    Also quiets uvicorn's "returned without completing response" error, which ``[die-after]``
    provokes on purpose.
    """
    logger = logging.getLogger("uvicorn.error")
    if _hide_deliberate_abort not in logger.filters:
        logger.addFilter(_hide_deliberate_abort)
    return FakeOpenAIApp(config)


def serve(
    config: FakeOpenAIConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 9100,
    sock: socket.socket | None = None,
    tls: tuple[str, str] | None = None,
) -> None:
    """Run the fake with uvicorn until interrupted (blocking); on ``sock`` when it is given."""
    run_blocking(create_app(config), host=host, port=port, sock=sock, tls=tls)
