"""The Responses API's stored objects, and what /v1/responses and /v1/embeddings ask first.

Creating a response is an ``Answer`` like any other (services/ask.py, with ``api="responses"``):
the same quotas, hard cap, retries, records and metrics. What is the Responses API's own is
ownership: OpenAI keeps a response under the provider key's project, which every app on the
same key shares, so the gateway remembers which app (and end user) created each id and lets
nobody else retrieve or delete it: to them it does not exist (404, as an unknown id).
"""

from __future__ import annotations

import re
import time
from datetime import timedelta
from typing import Any

from gateway.core.clock import utcnow
from gateway.core.errors import GatewayError, InvalidRequest, NotFound, UpstreamError
from gateway.services.ask import AskDeps, CallMeta, outcome_of
from gateway.services.interactions import InteractionRecord
from gateway.services.tokens import AppContext
from gateway.storage.database import Database
from gateway.storage.response_owners import (
    delete_owner,
    delete_owners_before,
    find_owner,
    insert_owner,
)
from gateway.storage.tables import ResponseOwner
from gateway.upstream.responses import parse_response

#: How long OpenAI keeps a stored response: its owner is not needed after that.
STORED_FOR = timedelta(days=30)
#: OpenAI's ids are ``resp_`` and hex; anything else is not an id the gateway stored.
_RESPONSE_ID = re.compile(r"resp_[A-Za-z0-9_-]{1,190}")


def check_direct(ctx: AppContext) -> None:
    """These APIs go straight to the upstream: an app whose answers pass through a workflow
    (moderation, memory) would have them bypassed, so it is refused instead."""
    if ctx.workflow != "direct":
        raise InvalidRequest(
            f"This app answers through the {ctx.workflow!r} workflow, which the Responses and "
            "embeddings APIs do not pass through; use /v1/chat/completions."
        )


def valid_response_id(value: object) -> str | None:
    return value if isinstance(value, str) and _RESPONSE_ID.fullmatch(value) else None


async def remember_owner(db: Database, ctx: AppContext, response_id: str) -> None:
    """Record that this app (and user) created ``response_id`` (an id seen again keeps its
    first owner: an upstream that reuses ids never hands one app's object to another)."""
    async with db.session() as session:
        await insert_owner(
            session,
            ResponseOwner(
                response_id=response_id, app_id=ctx.app_id, user=ctx.user, created_at=utcnow()
            ),
        )


async def forget_expired_owners(db: Database, *, older_than: timedelta = STORED_FOR) -> int:
    """Delete the owners of responses the upstream no longer keeps; the number deleted."""
    async with db.session() as session:
        return await delete_owners_before(session, utcnow() - older_than)


async def owns(db: Database, ctx: AppContext, response_id: str) -> bool:
    """Whether this app, and this end user (or the app token, for None), created it."""
    async with db.read() as session:
        owner = await find_owner(session, response_id)
    return owner is not None and owner.app_id == ctx.app_id and owner.user == ctx.user


async def _check_owner(db: Database, ctx: AppContext, response_id: str) -> None:
    if not await owns(db, ctx, response_id):
        raise NotFound(f"No response with id {response_id!r}.")


async def stored_response(
    deps: AskDeps, db: Database, ctx: AppContext, meta: CallMeta, response_id: str, method: str
) -> dict[str, Any]:
    """GET (the object) or DELETE (OpenAI's deletion answer) of one of this caller's responses.

    Recorded once, like every request: no tokens, the outcome and status of the call.
    """
    try:
        if valid_response_id(response_id) is None:
            raise NotFound("No response with this id.")
        await _check_owner(db, ctx, response_id)
        api_key = await deps.provider_keys.key_for(ctx.app_id)
        data = await deps.upstream.fetch_json(
            method, f"{ctx.base_url}/responses/{response_id}", api_key
        )
        if method == "GET":
            data = parse_response(data, ctx.model).raw  # checked at the boundary
        elif not isinstance(data, dict):
            raise UpstreamError("The upstream sent a malformed answer.")
        if method == "DELETE":
            async with db.session() as session:
                await delete_owner(session, response_id)
    except GatewayError as error:
        _record(deps, ctx, meta, outcome_of(error), error.http_status, error.code)
        raise
    _record(deps, ctx, meta, "completed", 200, None)
    result: dict[str, Any] = data
    return result


def _record(
    deps: AskDeps,
    ctx: AppContext,
    meta: CallMeta,
    outcome: str,
    http_status: int,
    error_code: str | None,
) -> None:
    deps.recorder.record(
        InteractionRecord(
            time=utcnow(),
            request_id=meta.request_id,
            route=meta.route,
            outcome=outcome,
            http_status=http_status,
            app_id=ctx.app_id,
            app_name=ctx.app_name,
            user=ctx.user,
            workflow=ctx.workflow,
            error_code=error_code,
            duration_ms=(time.perf_counter() - meta.started) * 1000,
            origin=meta.origin,
        )
    )
