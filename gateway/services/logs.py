"""Reading interaction records, scoped to one app or (for the operator) to all of them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
    async with db.session() as session:
        rows = list(await request_logs.find_logs(session, where, limit=limit + 1))
    more = len(rows) > limit
    rows = rows[:limit]
    cursor = str(rows[-1].id) if more and rows else None
    return LogPage(records=[record_to_json(row) for row in rows], next_cursor=cursor)
