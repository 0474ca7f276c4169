"""An answer after its request: ``GET /ask/{id}/events`` follows it, ``POST /ask/{id}/cancel``
stops it.

A reader sends the last event id it saw (``Last-Event-ID``, as browsers' EventSource do, or
``?after=N``) and gets every event after it, then the live answer until its ``done`` or
``error``. Only the app that asked, and for a session or OpenID token only the same user, may
read or cancel an answer: anyone else gets 404, exactly as for an unknown id.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from gateway.core.errors import InvalidRequest, NotFound
from gateway.http.deps import authenticate_app, resources_of
from gateway.http.routes.ask import error_encoder
from gateway.http.schemas.ask import AskStreamEvent
from gateway.http.schemas.errors import error_responses
from gateway.http.schemas.openapi import sse_content
from gateway.http.streaming import AnswerReader, EventStream
from gateway.services.answer_producer import LiveAnswer

router = APIRouter()

#: Event ids are small positive integers; anything longer is not one of ours.
MAX_ID_DIGITS = 9

EVENTS_OPERATION: dict[str, Any] = {
    "responses": {
        200: {
            "description": "The events after the given id, then the live answer.",
            "content": {
                "text/event-stream": sse_content(
                    AskStreamEvent,
                    description="The rest of the answer: `delta` events, then one `done` or "
                    "`error` event; each with its `id`.",
                )
            },
        },
        **error_responses(400, 401, 403, 404, 410),
    },
}


def _after(request: Request) -> int:
    """The id of the last event the reader has: ``?after=N`` or ``Last-Event-ID`` (else 0)."""
    raw = request.query_params.get("after")
    source = "after"
    if raw is None:
        raw, source = request.headers.get("last-event-id"), "Last-Event-ID"
    if raw is None or raw == "":
        return 0
    if not (raw.isascii() and raw.isdigit() and len(raw) <= MAX_ID_DIGITS):
        raise InvalidRequest(f"{source!r} must be an event id (a non-negative integer).")
    return int(raw)


async def _find(request: Request, request_id: str) -> LiveAnswer | None:
    """The answer if this process holds it; None if another replica does (through Redis)."""
    ctx = await authenticate_app(request)
    resources = resources_of(request)
    try:
        return resources.streams.find(request_id, ctx.app_id, ctx.user)
    except NotFound:
        if resources.relay is None:
            raise
    await resources.relay.check(request_id, ctx.app_id, ctx.user)
    return None


@router.get("/ask/{request_id}/events", **EVENTS_OPERATION)
async def follow_answer(request_id: str, request: Request) -> Response:
    resources = resources_of(request)
    after = _after(request)
    live = await _find(request, request_id)
    if live is None:
        assert resources.relay is not None
        await resources.relay.replayable(request_id, after)
        resources.metrics.streams_resumed.inc()
        encode_error = error_encoder(request_id)
        return EventStream(
            resources.relay.follow(request_id, after, encode_error),
            ping_interval=resources.settings.ping_interval_s,
        )
    resources.streams.attach(live, after)
    return AnswerReader(
        resources.streams,
        live,
        after=after,
        ping_interval=resources.settings.ping_interval_s,
    )


@router.post(
    "/ask/{request_id}/cancel",
    status_code=202,
    responses={
        202: {"description": "The answer is being stopped (or had ended already)."},
        **error_responses(401, 403, 404, 410),
    },
)
async def cancel_answer(request_id: str, request: Request) -> Response:
    live = await _find(request, request_id)
    resources = resources_of(request)
    if live is not None:
        resources.streams.cancel(live)
    elif resources.relay is not None:
        await resources.relay.cancel(request_id)
    return JSONResponse({"request_id": request_id}, status_code=202)
