"""GET and DELETE /conversations/{id}: the calling app's thread of the conversation workflow.

Scoped by the app token: another app's conversation id is a 404, exactly like an unknown one.
With a session or OpenID token, scoped to that user: another user's thread is a 404 too.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from gateway.core.errors import ConfigurationError
from gateway.flows.protocol import ThreadStore
from gateway.http.deps import authenticate_app, resources_of
from gateway.http.schemas.conversations import Conversation
from gateway.http.schemas.errors import error_responses
from gateway.services import conversations

router = APIRouter()


def _threads(request: Request) -> ThreadStore:
    workflows = resources_of(request).workflows
    if workflows is None:
        raise ConfigurationError("Workflows are not available on this server.")
    return workflows


@router.get(
    "/conversations/{conversation_id}",
    responses={
        200: {"model": Conversation, "description": "The thread, oldest message first."},
        **error_responses(401, 403, 404, 503),
    },
)
async def read_conversation(conversation_id: str, request: Request) -> Response:
    ctx = await authenticate_app(request)
    messages = await conversations.conversation(
        _threads(request),
        app_id=conversations.thread_owner(ctx.app_id, ctx.user),
        conversation_id=conversation_id,
    )
    return JSONResponse(
        {
            "conversation_id": conversation_id,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
        }
    )


@router.delete(
    "/conversations/{conversation_id}",
    status_code=204,
    responses=error_responses(401, 403, 404, 503),
)
async def delete_conversation(conversation_id: str, request: Request) -> Response:
    ctx = await authenticate_app(request)
    await conversations.forget_conversation(
        _threads(request),
        app_id=conversations.thread_owner(ctx.app_id, ctx.user),
        conversation_id=conversation_id,
    )
    return Response(status_code=204)
