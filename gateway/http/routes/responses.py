"""``/v1/responses`` (create, stream, retrieve, delete) and ``/v1/embeddings``: OpenAI's API with
the client token as key, and everything chat completions has (services/ask.py's ``Answer``).

A streamed response is OpenAI's named events passed through as they came (``event: <type>``,
``data: <json>``); a failure after the start ends it with OpenAI's ``error`` event. The owner of
a response is stored before its id first reaches the client (its ``response.created`` event, or
the JSON answer), so a retrieve right after never meets an unknown id.
"""

from __future__ import annotations

from typing import Any, cast

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.core.errors import GatewayError, NotFound, QuotaExceeded, RequestTooLarge
from gateway.http import sse
from gateway.http.body import parse_model, read_body
from gateway.http.calls import Call, check_limits, handle_call, record_refusal
from gateway.http.deps import authenticate_app, call_meta, resources_of
from gateway.http.json_response import FastJSONResponse
from gateway.http.ratelimit import headers_for
from gateway.http.resources import Resources
from gateway.http.schemas.embeddings import EMBEDDINGS_OPERATION, EmbeddingsRequest
from gateway.http.schemas.responses import (
    RESPONSES_OPERATION,
    STORED_RESPONSE_OPERATION,
    ResponsesRequest,
)
from gateway.http.streaming import AnswerResponse
from gateway.services.ask import Answer, AnswerEvent, AskInput, CallMeta, Delta, Failed
from gateway.services.responses import (
    check_direct,
    owns,
    remember_owner,
    stored_response,
    valid_response_id,
)
from gateway.services.tokens import AppContext
from gateway.upstream.types import ResponseEvent

router = APIRouter(prefix="/v1")

RESPONSES_ROUTE = "/v1/responses"
STORED_ROUTE = "/v1/responses/{id}"
EMBEDDINGS_ROUTE = "/v1/embeddings"
_CREATED = "response.created"
# Fields the gateway sets itself; everything else in the body goes upstream untouched.
_OWN_FIELDS = {"model", "input", "stream", "max_output_tokens", "temperature"}


def error_event(error: GatewayError, sequence_number: int) -> bytes:
    """OpenAI's ``error`` event of the Responses API, with the gateway's code and message."""
    data: dict[str, Any] = {
        "type": "error",
        "code": error.code,
        "message": error.message,
        "param": None,
        "sequence_number": sequence_number,
    }
    if isinstance(error, QuotaExceeded):
        data["scope"] = error.scope
    return sse.event("error", data)


class _Owner:
    """Stores the response's owner once, on the first event that names it."""

    def __init__(self, resources: Resources, ctx: AppContext, store: bool) -> None:
        self._resources = resources
        self._ctx = ctx
        self.pending = store

    async def remember(self, raw: dict[str, Any]) -> None:
        self.pending = False
        response_id = valid_response_id(raw.get("id"))
        if response_id is not None:
            await remember_owner(self._resources.db, self._ctx, response_id)


class _Encoder:
    """The Responses API's wire format; errors carry the number of events sent before them."""

    def __init__(self) -> None:
        self.sequence = 0

    def event(self, event: AnswerEvent, _event_id: int) -> bytes | None:
        if isinstance(event, Delta):
            chunk = cast(ResponseEvent, event.chunk)  # the Responses stream hands out these
            self.sequence += 1
            return b"event: " + chunk.event.encode() + b"\n" + sse.openai_data(chunk.raw)
        if isinstance(event, Failed):
            return error_event(event.error, self.sequence)
        return None  # Done: the stream already ended with its own response.completed

    def error(self, error: GatewayError, _event_id: int) -> bytes:
        return error_event(error, self.sequence)


async def _remember_owner(answer: Answer, owner: _Owner) -> GatewayError | None:
    """Stores the owner named by the first event (OpenAI's ``response.created``) before any
    byte goes out; the error when storage is down (an id nobody could retrieve)."""
    first = answer.peeked
    if not owner.pending or first is None or cast(ResponseEvent, first).event != _CREATED:
        return None
    try:
        await owner.remember(_response_of(first.raw))
    except GatewayError as error:
        answer.fail(error)
        return error
    return None


def _response_of(raw: str) -> dict[str, Any]:
    response = orjson.loads(raw).get("response")
    return response if isinstance(response, dict) else {}


@router.post("/responses", **RESPONSES_OPERATION)
async def create_response(request: Request) -> Response:
    resources = resources_of(request)
    meta = call_meta(request, RESPONSES_ROUTE)
    return await handle_call(resources, meta, lambda call: _respond(request, resources, meta, call))


async def _respond(request: Request, resources: Resources, meta: CallMeta, call: Call) -> Response:
    settings = resources.settings
    call.ctx = ctx = await authenticate_app(request)
    body = parse_model(await read_body(request, settings.max_body_bytes), ResponsesRequest)
    check_direct(ctx)
    messages = body.messages()
    check_limits(settings, messages, body.model_extra and body.model_extra.get("metadata"))
    if body.previous_response_id is not None:
        await _check_previous(resources, ctx, body.previous_response_id)
    extra = {k: v for k, v in (body.model_extra or {}).items() if k not in _OWN_FIELDS}
    extra.update(body.model_dump(include={"store", "previous_response_id"}, exclude_none=True))
    inp = AskInput(
        messages=messages,
        model=body.model,
        temperature=body.temperature,
        max_tokens=body.max_output_tokens,
        extra=extra,
        api="responses",
    )
    answer = call.answer = Answer(resources.ask_deps, ctx, inp, meta)
    owner = _Owner(resources, ctx, body.store)
    if not body.stream:
        completion = await call.start_watching(request.receive).run(answer.complete)
        if owner.pending:
            await owner.remember(completion.raw)
        return FastJSONResponse(
            completion.raw, headers=headers_for(answer.limit_states, openai=True)
        )
    await call.start_watching(request.receive).run(answer.open)
    failed = await _remember_owner(answer, owner)
    encoder = _Encoder()
    # Not resumable (OpenAI's API has no such thing): its reader leaving stops it at once.
    live = resources.streams.start(
        answer,
        request_id=meta.request_id,
        app_id=ctx.app_id,
        user=ctx.user,
        encode=encoder.event,
        encode_error=encoder.error,
        resumable=False,
        failed=failed,
    )
    return AnswerResponse(
        resources.streams,
        live,
        ping_interval=settings.ping_interval_s,
        headers=headers_for(answer.limit_states, openai=True),
        watch=call.hand_over(),
    )


async def _check_previous(resources: Resources, ctx: AppContext, response_id: str) -> None:
    """Chaining on another app's response would hand it that conversation: as unknown."""
    if not await owns(resources.db, ctx, response_id):
        raise NotFound(f"No response with id {response_id!r} (previous_response_id).")


@router.get("/responses/{response_id}", **STORED_RESPONSE_OPERATION)
async def retrieve_response(request: Request, response_id: str) -> Response:
    return await _stored(request, response_id, "GET")


@router.delete("/responses/{response_id}", **STORED_RESPONSE_OPERATION)
async def delete_response(request: Request, response_id: str) -> Response:
    return await _stored(request, response_id, "DELETE")


async def _stored(request: Request, response_id: str, method: str) -> Response:
    resources = resources_of(request)
    meta = call_meta(request, STORED_ROUTE)
    try:
        ctx = await authenticate_app(request)
    except GatewayError as error:
        record_refusal(resources, meta, None, error)
        raise
    data = await stored_response(resources.ask_deps, resources.db, ctx, meta, response_id, method)
    return FastJSONResponse(data)


@router.post("/embeddings", **EMBEDDINGS_OPERATION)
async def embeddings(request: Request) -> Response:
    resources = resources_of(request)
    meta = call_meta(request, EMBEDDINGS_ROUTE)
    return await handle_call(resources, meta, lambda call: _embed(request, resources, meta, call))


async def _embed(request: Request, resources: Resources, meta: CallMeta, call: Call) -> Response:
    settings = resources.settings
    call.ctx = ctx = await authenticate_app(request)
    body = parse_model(await read_body(request, settings.max_body_bytes), EmbeddingsRequest)
    check_direct(ctx)
    messages = body.messages()
    chars = sum(len(m["content"]) for m in messages)
    if chars > settings.max_prompt_chars:  # many inputs are one prompt here, not many messages
        raise RequestTooLarge(
            f"The input is too long ({chars} characters); the limit is {settings.max_prompt_chars}."
        )
    inp = AskInput(
        messages=messages,
        model=body.model,
        extra=body.model_dump(exclude={"model"}, exclude_none=True),
        api="embeddings",
    )
    answer = call.answer = Answer(resources.ask_deps, ctx, inp, meta)
    completion = await call.start_watching(request.receive).run(answer.complete)
    return FastJSONResponse(completion.raw, headers=headers_for(answer.limit_states, openai=True))
