"""POST /ask: the streaming contract the Angular client relies on (events delta, done, error)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from gateway.core.errors import ContentFlagged, GatewayError
from gateway.http import sse
from gateway.http.body import parse_model, read_body
from gateway.http.calls import check_limits, record_refusal
from gateway.http.deps import authenticate_app, call_meta, resources_of
from gateway.http.ratelimit import headers_for
from gateway.http.schemas import AskRequest
from gateway.http.streaming import ClientDisconnected, SSEResponse, unless_disconnected
from gateway.services.ask import Answer, AskInput, Delta, Done
from gateway.services.tokens import AppContext

router = APIRouter()


async def _encode(answer: Answer, request_id: str) -> AsyncIterator[bytes]:
    async for event in answer.events():
        if isinstance(event, Delta):
            if event.chunk.text:
                yield sse.delta(event.chunk.text)
        elif isinstance(event, Done):
            yield sse.event(
                sse.EVENT_DONE,
                {
                    "request_id": request_id,
                    "finish_reason": event.finish_reason,
                    "model": event.model,
                    "usage": event.usage.to_json(),
                },
            )
        else:
            yield sse.error_event(event.error, request_id)


async def _only(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _wants_json(request: Request, body: AskRequest) -> bool:
    accept = request.headers.get("accept", "")
    return not body.stream or ("application/json" in accept and "text/event-stream" not in accept)


@router.post("/ask")
async def ask(request: Request) -> Response:
    resources = resources_of(request)
    settings = resources.settings
    meta = call_meta(request, "/ask")
    ctx: AppContext | None = None
    answer: Answer | None = None
    try:
        ctx = await authenticate_app(request)
        body = parse_model(await read_body(request, settings.max_body_bytes), AskRequest)
        messages = body.chat_messages()
        check_limits(settings, messages, body.metadata)
        inp = AskInput(
            messages=messages,
            model=body.model,
            temperature=body.temperature,
            max_tokens=body.max_tokens,
            conversation_id=body.conversation_id,
            metadata=body.metadata,
        )
        answer = Answer(resources.ask_deps, ctx, inp, meta)
        if _wants_json(request, body):
            completion = await unless_disconnected(request.receive, answer.complete)
            return JSONResponse(
                headers=headers_for(answer.limit_states, openai=False),
                content={
                    "request_id": meta.request_id,
                    "text": completion.text,
                    "finish_reason": completion.finish_reason,
                    "model": completion.model,
                    "usage": completion.usage.to_json(),
                },
            )
        try:
            await unless_disconnected(request.receive, answer.open)
        except ContentFlagged as flagged:
            # A moderation refusal is part of the stream contract: one `error` event, the end.
            return SSEResponse(
                _only(sse.error_event(flagged, meta.request_id)),
                settle=answer.settle,
                ping_interval=settings.ping_interval_s,
                headers=headers_for(answer.limit_states, openai=False),
            )
    except ClientDisconnected:
        assert answer is not None
        with anyio.CancelScope(shield=True):
            await answer.settle()  # recorded as client_disconnected
        return Response(status_code=499)
    except GatewayError as error:
        if answer is None:
            record_refusal(resources, meta, ctx, error)
        else:
            await answer.settle()
        raise
    return SSEResponse(
        _encode(answer, meta.request_id),
        settle=answer.settle,
        ping_interval=settings.ping_interval_s,
        headers=headers_for(answer.limit_states, openai=False),
    )
