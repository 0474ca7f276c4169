"""GET /logs: interaction records, newest first, scoped to the caller's app (or all, for admin)."""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from gateway.core.clock import utcnow
from gateway.core.durations import parse_duration
from gateway.core.errors import Forbidden, InvalidRequest, NotFound
from gateway.http import sse
from gateway.http.deps import authenticate_app, is_admin, resources_of
from gateway.http.resources import Resources
from gateway.http.schemas import (
    URI_TOO_LONG,
    LogPage,
    LogRecord,
    error_responses,
    inline_schema,
    sse_content,
)
from gateway.http.streaming import EventStream
from gateway.services import apps as app_service
from gateway.services import logs as log_service
from gateway.storage.request_logs import LogFilter

router = APIRouter()
EVENT_RECORD = "record"
_SMALL_INT = re.compile(r"[0-9]{1,9}")

# Read from request.query_params (our error shape for bad values, never FastAPI's 422), so
# declared here.
_PARAMETERS = [
    {
        "name": "app",
        "in": "query",
        "schema": {"type": "string"},
        "description": "Admin token: only this app's records. App token: its own name only.",
    },
    {
        "name": "since",
        "in": "query",
        "schema": {"type": "string"},
        "description": "An ISO-8601 time with a zone, or a duration meaning that long ago (10m).",
    },
    {
        "name": "until",
        "in": "query",
        "schema": {"type": "string"},
        "description": "Like `since`; records strictly before it.",
    },
    {
        "name": "outcome",
        "in": "query",
        "schema": {"type": "string"},
        "description": "Only records with this outcome (`completed`, `quota_exceeded`...).",
    },
    {
        "name": "user",
        "in": "query",
        "schema": {"type": "string"},
        "description": "Only this end user's records (sessions, OpenID Connect sign-in).",
    },
    {
        "name": "cursor",
        "in": "query",
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
        "description": "The `next_cursor` of the previous page.",
    },
    {
        "name": "limit",
        "in": "query",
        "schema": {"type": "integer", "minimum": 0, "maximum": log_service.MAX_LIMIT},
        "description": "Records per page (1 to 1000, default 100); with `follow`, how many past "
        "records to send first (default 0).",
    },
    {
        "name": "follow",
        "in": "query",
        "schema": {"type": "boolean", "default": False},
        "description": "Stream the records as SSE `record` events, new ones as they are written.",
    },
]


def _time(value: str | None, name: str) -> datetime | None:
    """An ISO-8601 instant, or a duration meaning 'that long ago' (e.g. 10m), in UTC."""
    if value is None:
        return None
    try:
        return _instant(value, name)
    except OverflowError:
        # datetime spans the years 1 to 9999: "999999d" ago or 9999-12-31T23:59-01:00 do not fit.
        raise InvalidRequest(f"'{name}' is out of range.") from None


def _instant(value: str, name: str) -> datetime:
    if value[-1:].isalpha() and value[:-1].isdigit():
        return utcnow() - parse_duration(value)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(f"'{name}' must be an ISO-8601 time or a duration like 10m.") from None
    if parsed.tzinfo is None:
        raise InvalidRequest(f"'{name}' needs a time zone (e.g. 2026-12-01T10:00:00Z).")
    return parsed.astimezone(UTC)


def _text(value: str | None, name: str) -> str | None:
    if value is not None and "\x00" in value:  # PostgreSQL refuses NUL in a text parameter
        raise InvalidRequest(f"'{name}' holds a NUL character.")
    return value


def _limit(value: str | None, *, minimum: int = 1) -> int:
    if value is None:
        return 100
    # ASCII digits only: str.isdigit() also accepts "²", which int() refuses.
    if _SMALL_INT.fullmatch(value) is None or not minimum <= int(value) <= log_service.MAX_LIMIT:
        raise InvalidRequest(
            f"'limit' must be an integer from {minimum} to {log_service.MAX_LIMIT}."
        )
    return int(value)


@router.get(
    "/logs",
    responses={
        200: {
            "model": LogPage,
            "description": "A page of records, newest first; with `follow`, an SSE stream.",
            "content": {
                "text/event-stream": sse_content(
                    {EVENT_RECORD: inline_schema(LogRecord)},
                    description="One `record` event per record, oldest first, never ending.",
                )
            },
        },
        **error_responses(400, 401, 403, 503),
        **URI_TOO_LONG,  # its query strings are the caller's
    },
    openapi_extra={"parameters": _PARAMETERS},
)
async def logs(request: Request) -> Response:
    resources = resources_of(request)
    params = request.query_params
    app_name = _text(params.get("app"), "app")
    if is_admin(request):
        app_id = None
        if app_name is not None:
            try:
                app_id = (await app_service.get_app(resources.db, app_name)).id
            except NotFound:
                raise InvalidRequest(f"No app named {app_name!r}.") from None
    else:
        ctx = await authenticate_app(request, end_users=False)
        if app_name is not None and app_name != ctx.app_name:
            raise Forbidden("An app token can only read its own app's records.")
        app_id = ctx.app_id
    try:
        before_id = log_service.parse_cursor(params.get("cursor"))
    except ValueError:
        raise InvalidRequest("'cursor' is malformed.") from None
    where = LogFilter(
        app_id=app_id,
        since=_time(params.get("since"), "since"),
        until=_time(params.get("until"), "until"),
        outcome=_text(params.get("outcome"), "outcome"),
        user=_text(params.get("user"), "user"),
        before_id=before_id,
    )
    if params.get("follow") in ("true", "1"):
        return _follow(resources, where, backlog=_limit(params.get("limit") or "0", minimum=0))
    page = await log_service.recent_logs(resources.db, where, limit=_limit(params.get("limit")))
    return JSONResponse({"records": page.records, "next_cursor": page.next_cursor})


def _follow(resources: Resources, where: LogFilter, *, backlog: int) -> Response:
    """The records as an SSE stream (`event: record`), new ones as any replica writes them."""

    async def events() -> AsyncGenerator[bytes, None]:
        async for record in log_service.follow_logs(resources.db, where, backlog=backlog):
            yield sse.event(EVENT_RECORD, record)

    return EventStream(events(), ping_interval=resources.settings.ping_interval_s)
