"""Reading interaction records, scoped to one app or (for the operator) to all of them."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import anyio
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.core.clock import utcnow
from gateway.storage import feedback as feedback_rows
from gateway.storage import request_logs
from gateway.storage.database import Database
from gateway.storage.request_logs import LogFilter
from gateway.storage.tables import Feedback, RequestLog

MAX_LIMIT = 1000
_CURSOR = re.compile(r"[0-9]{1,18}")


@dataclass(frozen=True, slots=True)
class LogPage:
    records: list[dict[str, Any]]
    next_cursor: str | None


def _iso(record: RequestLog) -> str:
    return record.time.isoformat().replace("+00:00", "Z")


def record_to_json(record: RequestLog, feedback: Feedback | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": str(record.id),
        "time": _iso(record),
        "app": record.app_name,
        "user": record.user,
        "request_id": record.request_id,
        "route": record.route,
        "model": record.model,
        "workflow": record.workflow,
        "outcome": record.outcome,
        "http_status": record.http_status,
        "error_code": record.error_code,
        "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.completion_tokens,
        "ttft_ms": record.ttft_ms,
        "duration_ms": record.duration_ms,
        "origin": record.origin,
        "metadata": record.request_metadata,
        "feedback": None
        if feedback is None
        else {"score": feedback.score, "comment": feedback.comment},
        "cached": record.cached,
    }
    if record.prompt_text is not None or record.answer_text is not None:
        data["prompt"] = record.prompt_text
        data["answer"] = record.answer_text
    return data


def parse_cursor(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    # ASCII digits that fit a 64-bit row id: the database refuses bigger integers.
    if _CURSOR.fullmatch(cursor) is None:
        raise ValueError("cursor")
    return int(cursor)


async def log_filter(
    db: Database,
    *,
    app_name: str | None = None,
    outcome: str | None = None,
    user: str | None = None,
    since: timedelta | None = None,
) -> LogFilter:
    """Which records to read: an app's (by name; NotFound if it does not exist), one outcome,
    one end user, newer than ``since`` ago."""
    from gateway.services.apps import get_app

    app_id = None if app_name is None else (await get_app(db, app_name)).id
    return LogFilter(
        app_id=app_id,
        outcome=outcome,
        user=user,
        since=None if since is None else utcnow() - since,
    )


async def _with_feedback(session: AsyncSession, rows: Sequence[RequestLog]) -> list[dict[str, Any]]:
    """The records as JSON, each with its rating (one query for the whole page)."""
    rated = await feedback_rows.feedback_for(session, {row.request_id for row in rows})
    return [record_to_json(row, rated.get(row.request_id)) for row in rows]


async def recent_logs(db: Database, where: LogFilter, *, limit: int) -> LogPage:
    limit = max(1, min(limit, MAX_LIMIT))
    async with db.read() as session:
        rows = list(await request_logs.find_logs(session, where, limit=limit + 1))
        more = len(rows) > limit
        rows = rows[:limit]
        records = await _with_feedback(session, rows)
    cursor = str(rows[-1].id) if more and rows else None
    return LogPage(records=records, next_cursor=cursor)


async def follow_logs(
    db: Database,
    where: LogFilter,
    *,
    poll_interval: float = 0.5,
    backlog: int = 0,
    grace: float = 10.0,
) -> AsyncIterator[dict[str, Any]]:
    """The last ``backlog`` records (oldest first), then new ones as any replica writes them."""
    async with db.read() as session:
        latest = list(await request_logs.find_logs(session, where, limit=max(backlog, 1)))
        backlog_records = await _with_feedback(session, latest[:backlog])
    for record in reversed(backlog_records):
        yield record
    # Replicas commit their batches independently, so a record can become visible after one
    # with a higher id: the highest id seen is not a safe cursor. The cursor only moves past
    # ids first seen more than ``grace`` seconds ago (anything below them has committed by
    # then); the newer ones are re-read each poll and skipped once shown.
    floor = latest[0].id or 0 if latest else 0
    shown: dict[int, float] = {}
    while True:
        cursor, full = floor, True
        while full:  # page through everything above the floor
            async with db.read() as session:
                rows = await request_logs.find_logs(
                    session, replace(where, after_id=cursor), limit=MAX_LIMIT
                )
                new = [row for row in rows if row.id is not None and row.id not in shown]
                records = await _with_feedback(session, new)
            now = time.monotonic()
            for row, record in zip(new, records, strict=True):
                shown[row.id or 0] = now
                yield record
            full = len(rows) == MAX_LIMIT
            cursor = rows[-1].id or cursor if rows else cursor
        settled = [record_id for record_id, at in shown.items() if now - at > grace]
        if settled:
            floor = max(floor, *settled)
            for record_id in [i for i in shown if i <= floor]:
                del shown[record_id]
        await anyio.sleep(poll_interval)


async def prune_logs(db: Database, *, older_than: timedelta) -> int:
    """Delete records (and their ratings) older than ``older_than``; the number of records."""
    cutoff = utcnow() - older_than
    async with db.session() as session:
        await feedback_rows.delete_feedback_before(session, cutoff)
        return await request_logs.delete_logs_before(session, cutoff)
