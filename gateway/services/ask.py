"""One answer's lifecycle: build the upstream call, peek, stream, settle and record.

``Answer.open()`` does everything that can still fail as a plain HTTP error (the provider key,
the upstream status, the first content chunk). ``Answer.events()`` then yields what the client
sees; it never raises a ``GatewayError`` (failures become a final ``Failed`` event). ``settle()``
is idempotent and must be called in a shielded ``finally``: it closes the upstream connection
(so no more tokens are paid for) and records the interaction exactly once.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio

from gateway.core.clock import utcnow
from gateway.core.errors import (
    Cancelled,
    GatewayError,
    ModelNotAllowed,
    QuotaExceeded,
    ShuttingDown,
    UpstreamError,
)
from gateway.core.quota_policy import MICROS, LimitState
from gateway.core.redact import Redactor
from gateway.flows.protocol import WorkflowRunner
from gateway.observability.metrics import Metrics
from gateway.services.conversations import thread_owner
from gateway.services.interactions import InteractionRecord, InteractionRecorder
from gateway.services.limiter import Limiter
from gateway.services.metering import QuotaMeter, priced_model
from gateway.services.provider_keys import ProviderKeyCache
from gateway.services.tokens import AppContext
from gateway.upstream.client import ChunkStream, UpstreamClient
from gateway.upstream.types import Api, ChatRequest, Chunk, Completion, Usage


@dataclass(frozen=True, slots=True)
class AskDeps:
    upstream: UpstreamClient
    recorder: InteractionRecorder
    limiter: Limiter
    provider_keys: ProviderKeyCache
    first_token_timeout: float
    idle_timeout: float
    #: Runs the LangGraph workflows; None: every app answers directly.
    workflows: WorkflowRunner | None = None
    metrics: Metrics | None = None


@dataclass(frozen=True, slots=True)
class AskInput:
    """A validated request, in the gateway's terms (the caller's messages, no system prompt)."""

    messages: list[dict[str, Any]]
    model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    conversation_id: str | None = None
    metadata: dict[str, Any] | None = None
    #: OpenAI fields the /v1 route passes through untouched.
    extra: dict[str, Any] = field(default_factory=dict)
    #: The OpenAI endpoint to call (the /v1/responses and /v1/embeddings routes).
    api: Api = "chat"


@dataclass(frozen=True, slots=True)
class CallMeta:
    request_id: str
    route: str
    origin: str | None
    started: float  # time.perf_counter() when the request arrived


@dataclass(slots=True)  # not frozen: one per stream event (see Chunk)
class Delta:
    chunk: Chunk


@dataclass(frozen=True, slots=True)
class Done:
    finish_reason: str | None
    model: str
    usage: Usage


@dataclass(frozen=True, slots=True)
class Failed:
    error: GatewayError


AnswerEvent = Delta | Done | Failed


def chat_request(ctx: AppContext, inp: AskInput, api_key: str) -> ChatRequest:
    model = inp.model or ctx.model
    if model not in ctx.allowed_models:
        raise ModelNotAllowed(
            f"Model {model!r} is not allowed for this app "
            f"(allowed: {', '.join(ctx.allowed_models)})."
        )
    max_tokens = min(inp.max_tokens or ctx.max_output_tokens, ctx.max_output_tokens)
    messages = inp.messages
    if ctx.system_prompt and inp.api != "embeddings":
        messages = [{"role": "system", "content": ctx.system_prompt}, *messages]
    return ChatRequest(
        base_url=ctx.base_url,
        api_key=api_key,
        model=model,
        messages=messages,
        max_tokens=max_tokens,
        temperature=inp.temperature,
        extra=inp.extra,
        # An embedding model has no chat fallbacks.
        fallback_models=()
        if inp.api == "embeddings"
        else tuple(m for m in ctx.fallback_models if m != model),
        api=inp.api,
    )


def outcome_of(error: GatewayError) -> str:
    if isinstance(error, ShuttingDown):
        return "shutdown"
    if isinstance(error, Cancelled):
        return "cancelled"
    return "upstream_error" if isinstance(error, UpstreamError) else "rejected"


def estimate_prompt_tokens(messages: list[dict[str, Any]]) -> int:
    """A rough count (4 characters a token) for answers cut before the upstream's usage."""
    chars = sum(len(str(m.get("content") or "")) for m in messages)
    return max(1, chars // 4) + 3 * len(messages)


def prompt_text(messages: list[dict[str, Any]]) -> str:
    return "\n".join(f"{m.get('role')}: {m.get('content')}" for m in messages)


class Answer:
    def __init__(self, deps: AskDeps, ctx: AppContext, inp: AskInput, meta: CallMeta) -> None:
        self._deps = deps
        self._ctx = ctx
        self._inp = inp
        self._meta = meta
        self._request: ChatRequest | None = None
        self._stream: ChunkStream | None = None
        self._buffered: list[Chunk] = []
        self._model = inp.model or ctx.model
        self._text: list[str] = []
        self._content_chunks = 0
        self._usage: Usage | None = None
        self._first_token_at: float | None = None
        self._finish_reason: str | None = None
        self._error: GatewayError | None = None
        self._completed = False
        self._settled = False
        self._keep_text = ctx.log_content == "full"
        self._meter = QuotaMeter(deps.limiter, app_id=ctx.app_id, quota=ctx.limits, user=ctx.user)
        self._capped = False
        self._upstream_started: float | None = None
        self._streaming = False
        self._ended = False

    @property
    def limit_states(self) -> tuple[LimitState, ...]:
        return self._meter.states

    async def _prepare(self) -> ChatRequest:
        """Decrypt the key, build the request and reserve the quota (all before the upstream)."""
        api_key = await self._deps.provider_keys.key_for(self._ctx.app_id)
        request = chat_request(self._ctx, self._inp, api_key)
        self._request = request
        self._model = request.model
        await self._meter.reserve(request, max_output_tokens=self._ctx.max_output_tokens)
        return request

    @property
    def model(self) -> str:
        return self._model

    def redact(self, text: str) -> str:
        """Upstream ``text`` forwarded as it is, without this app's provider key (by value)."""
        return Redactor(*(() if self._request is None else (self._request.api_key,)))(text)

    @property
    def peeked(self) -> Chunk | None:
        """The first event ``open()`` read, until ``events()`` hands it out."""
        return self._buffered[0] if self._buffered else None

    def finished(self) -> bool:
        """Whether ``events()`` has produced its final event (``Done`` or ``Failed``)."""
        return self._ended

    def more_ready(self) -> bool:
        """Whether the next event can be produced without waiting for the upstream."""
        return bool(self._buffered) or (self._stream is not None and self._stream.ready())

    async def open(self) -> None:
        """Start the upstream call and read its first event; raises GatewayError."""
        try:
            request = await self._prepare()
            self._stream = await self._open_stream(request)
            # Peek one event: the upstream has accepted the request (OpenAI sends the role
            # chunk at once). The wait for the first token happens after the headers, with
            # pings, so a slow model does not look like a dead connection.
            chunk = await self._next()
            if chunk is not None:
                self._buffered.append(chunk)
            if self._deps.metrics is not None:
                self._deps.metrics.active_streams.labels(self._ctx.app_name).inc()
                self._streaming = True
        except GatewayError as error:
            self._error = error
            raise

    async def _open_stream(self, request: ChatRequest) -> ChunkStream:
        self._upstream_started = time.perf_counter()
        workflows = self._deps.workflows
        if self._ctx.workflow == "direct" or workflows is None:
            return await self._deps.upstream.open_stream(request)
        return await workflows.open_stream(
            self._ctx.workflow,
            request,
            app_id=thread_owner(self._ctx.app_id, self._ctx.user),
            conversation_id=self._inp.conversation_id,
        )

    async def _next(self) -> Chunk | None:
        assert self._stream is not None
        timeout = (
            self._deps.first_token_timeout
            if self._first_token_at is None
            else self._deps.idle_timeout
        )
        chunk = await self._stream.next_chunk(timeout)
        if chunk is not None:
            self._account(chunk)
        return chunk

    def _account(self, chunk: Chunk) -> None:
        if chunk.text:
            if self._first_token_at is None:
                self._first_token_at = time.perf_counter()
            self._content_chunks += 1
            if self._keep_text:
                self._text.append(chunk.text)
        if chunk.finish_reason:
            self._finish_reason = chunk.finish_reason
        if chunk.usage is not None:
            self._usage = chunk.usage
        if chunk.model:
            self._model = chunk.model

    async def events(self) -> AsyncIterator[AnswerEvent]:
        while self._buffered:  # out before it is handed out: more_ready() means another
            yield Delta(self._buffered.pop(0))
        try:
            while (chunk := await self._next()) is not None:
                if self._over_reservation():
                    raise QuotaExceeded(
                        "The answer was stopped: it reached the tokens or budget this request "
                        "was admitted for (the app's quota is hard-capped).",
                        limit="hard_cap",
                    )
                yield Delta(chunk)
        except GatewayError as error:
            self._error = error
            self._ended = True
            yield Failed(error)
            return
        self._completed = self._ended = True
        yield Done(finish_reason=self._finish_reason, model=self._model, usage=self.usage)

    def _over_reservation(self) -> bool:
        """Hard cap: the last chunk would pass the reservation; it is neither sent nor counted."""
        if not self._meter.over(self._content_chunks):
            return False
        self._content_chunks -= 1
        self._capped = True
        return True

    async def _settle_quota(self, usage: Usage) -> None:
        await self._meter.settle(usage, model=self._priced_model())

    def _priced_model(self) -> str:
        return priced_model(self._model, self._request)

    @property
    def usage(self) -> Usage:
        if self._usage is not None and not self._capped:
            return self._usage
        # Cut short: what we saw, estimated (the quotas settle on this too).
        prompt = self._meter.prompt_estimate
        if prompt is None:
            prompt = estimate_prompt_tokens(self._request.messages if self._request else [])
        return Usage(prompt_tokens=prompt, completion_tokens=self._content_chunks)

    def fail(self, error: GatewayError) -> None:
        """Record that the answer was ended by the gateway (e.g. a shutdown) with this error.

        A no-op once the answer has ended or settled: its record tells how it really ended.
        """
        if self._ended or self._settled:
            return
        self._error = error

    async def complete(self) -> Completion:
        """A non-streamed answer, recorded; raises GatewayError."""
        if self._ctx.workflow != "direct" and self._deps.workflows is not None:
            return await self._collect_stream()
        try:
            request = await self._prepare()
            self._upstream_started = time.perf_counter()
            completion = await self._deps.upstream.complete(request)
        except GatewayError as error:
            self._settled = True
            self._error = error
            await self._settle_quota(Usage())
            self._record_error(error)
            raise
        self._first_token_at = time.perf_counter()
        self._usage = completion.usage
        self._model = completion.model
        self._finish_reason = completion.finish_reason
        if self._keep_text:
            self._text.append(completion.text)
        self._completed = self._settled = True
        await self._settle_quota(completion.usage)
        self.record(outcome="completed", http_status=200, error_code=None)
        return completion

    async def _collect_stream(self) -> Completion:
        """Workflows only stream: a JSON answer is the stream, collected."""
        await self.open()
        parts: list[str] = []
        done: Done | None = None
        try:
            async for event in self.events():
                if isinstance(event, Failed):
                    raise event.error
                if isinstance(event, Delta):
                    parts.append(event.chunk.text)
                else:
                    done = event
        finally:
            with anyio.CancelScope(shield=True):
                await self.settle()
        assert done is not None  # events() ends with Done or Failed
        text = "".join(parts)
        raw = {
            "id": f"chatcmpl-{self._meta.request_id}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": done.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": done.finish_reason,
                }
            ],
            "usage": done.usage.to_json(),
        }
        return Completion(
            raw=raw, text=text, finish_reason=done.finish_reason, model=done.model, usage=done.usage
        )

    async def settle(self) -> None:
        """Close the upstream and record the interaction, once. Call it shielded."""
        if self._settled:
            return
        self._settled = True
        if self._stream is not None:
            await self._stream.aclose()
        if self._streaming and self._deps.metrics is not None:
            self._deps.metrics.active_streams.labels(self._ctx.app_name).dec()
        try:
            await self._settle_quota(self._consumed())
        finally:  # every request gets its record, whatever settling met
            self._record_end()

    def _record_end(self) -> None:
        if self._completed:
            self.record(outcome="completed", http_status=200, error_code=None)
        elif isinstance(self._error, QuotaExceeded) and self._content_chunks:
            self.record(outcome="quota_stopped", http_status=200, error_code=self._error.code)
        elif self._error is not None:
            self._record_error(self._error)
        else:
            # Ended by neither a result nor an error: the client went away (nginx's 499).
            self.record(outcome="client_disconnected", http_status=499, error_code=None)

    def _consumed(self) -> Usage:
        """What the upstream billed: nothing when it failed before producing anything."""
        if self._usage is None and self._content_chunks == 0:
            return Usage()
        return self.usage

    def _record_error(self, error: GatewayError) -> None:
        self.record(outcome=outcome_of(error), http_status=error.http_status, error_code=error.code)

    def record(self, *, outcome: str, http_status: int, error_code: str | None) -> None:
        usage = self._consumed()
        ttft = (
            None
            if self._first_token_at is None
            else (self._first_token_at - self._meta.started) * 1000
        )
        self._deps.recorder.record(
            InteractionRecord(
                time=utcnow(),
                request_id=self._meta.request_id,
                route=self._meta.route,
                outcome=outcome,
                http_status=http_status,
                app_id=self._ctx.app_id,
                app_name=self._ctx.app_name,
                user=self._ctx.user,
                model=self._model,
                workflow=self._ctx.workflow,
                error_code=error_code,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                ttft_ms=ttft,
                duration_ms=(time.perf_counter() - self._meta.started) * 1000,
                # Priced by the model that answered, under its requested name.
                cost_usd=self._deps.limiter.cost_micros(
                    self._priced_model(),
                    usage.prompt_tokens,
                    usage.completion_tokens,
                )
                / MICROS,
                origin=self._meta.origin,
                prompt_text=prompt_text(self._inp.messages) if self._keep_text else None,
                answer_text="".join(self._text) if self._keep_text else None,
                request_metadata=self._inp.metadata,
                quota_limit=(
                    self._error.qualified_limit if isinstance(self._error, QuotaExceeded) else None
                ),
                upstream_s=self._upstream_seconds(),
                metric_model=self._priced_model(),
                finish_reason=self._finish_reason,
                prompt_messages=self._inp.messages if self._keep_text else None,
            )
        )

    def _upstream_seconds(self) -> float | None:
        if self._upstream_started is None:
            return None
        return time.perf_counter() - self._upstream_started
