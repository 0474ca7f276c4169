"""Reading interaction records, scoped to one app or (for the operator) to all of them."""

from __future__ import annotations

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
    if not cursor.isdigit():
        raise ValueError("cursor")
    return int(cursor)


async def recent_logs(db: Database, where: LogFilter, *, limit: int) -> LogPage:
    limit = max(1, min(limit, MAX_LIMIT))
    async with db.read() as session:
        rows = list(await request_logs.find_logs(session, where, limit=limit + 1))
    more = len(rows) > limit
    rows = rows[:limit]
    cursor = str(rows[-1].id) if more and rows else None
    return LogPage(records=[record_to_json(row) for row in rows], next_cursor=cursor)


async def follow_logs(
    db: Database, where: LogFilter, *, poll_interval: float = 0.5, backlog: int = 0
) -> AsyncIterator[dict[str, Any]]:
    """The last ``backlog`` records (oldest first), then new ones as any replica writes them."""
    async with db.read() as session:
        latest = list(await request_logs.find_logs(session, where, limit=max(backlog, 1)))
    last_id = latest[0].id if latest else 0
    for row in reversed(latest[:backlog]):
        yield record_to_json(row)
    while True:
        async with db.read() as session:
            rows = await request_logs.find_logs(
                session, replace(where, after_id=last_id or 0), limit=MAX_LIMIT
            )
        for row in rows:
            last_id = row.id or last_id
            yield record_to_json(row)
        if len(rows) < MAX_LIMIT:
            await anyio.sleep(poll_interval)


async def prune_logs(db: Database, *, older_than: timedelta) -> int:
    """Delete records older than ``older_than``; the number deleted."""
    async with db.session() as session:
        return await request_logs.delete_logs_before(session, utcnow() - older_than)
