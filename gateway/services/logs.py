"""Reading interaction records, scoped to one app or (for the operator) to all of them."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import anyio

from gateway.core.clock import utcnow
from gateway.storage import request_logs
from gateway.storage.database import Database
from gateway.storage.request_logs import LogFilter
from gateway.storage.tables import RequestLog

MAX_LIMIT = 1000
_CURSOR = re.compile(r"[0-9]{1,18}")


@dataclass(frozen=True, slots=True)
class LogPage:
    records: list[dict[str, Any]]
    next_cursor: str | None


def _iso(record: RequestLog) -> str:
    return record.time.isoformat().replace("+00:00", "Z")


def record_to_json(record: RequestLog) -> dict[str, Any]:
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


async def recent_logs(db: Database, where: LogFilter, *, limit: int) -> LogPage:
    limit = max(1, min(limit, MAX_LIMIT))
    async with db.read() as session:
        rows = list(await request_logs.find_logs(session, where, limit=limit + 1))
    more = len(rows) > limit
    rows = rows[:limit]
    cursor = str(rows[-1].id) if more and rows else None
    return LogPage(records=[record_to_json(row) for row in rows], next_cursor=cursor)


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
    for row in reversed(latest[:backlog]):
        yield record_to_json(row)
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
            now = time.monotonic()
            for row in rows:
                if row.id is not None and row.id not in shown:
                    shown[row.id] = now
                    yield record_to_json(row)
            full = len(rows) == MAX_LIMIT
            cursor = rows[-1].id or cursor if rows else cursor
        settled = [record_id for record_id, at in shown.items() if now - at > grace]
        if settled:
            floor = max(floor, *settled)
            for record_id in [i for i in shown if i <= floor]:
                del shown[record_id]
        await anyio.sleep(poll_interval)


async def prune_logs(db: Database, *, older_than: timedelta) -> int:
    """Delete records older than ``older_than``; the number deleted."""
    async with db.session() as session:
        return await request_logs.delete_logs_before(session, utcnow() - older_than)
