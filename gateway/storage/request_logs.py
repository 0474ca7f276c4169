"""Rows of the ``request_logs`` table: one per interaction, appended in batches."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.storage.tables import RequestLog


async def append_logs(session: AsyncSession, rows: Sequence[dict[str, object]]) -> None:
    if rows:
        await session.execute(insert(RequestLog), list(rows))


@dataclass(frozen=True, slots=True)
class LogFilter:
    app_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    outcome: str | None = None
    #: Only records with an id below this one (the cursor of the previous page).
    before_id: int | None = None
    #: Only records with an id above this one (following new records).
    after_id: int | None = None


async def find_logs(session: AsyncSession, where: LogFilter, *, limit: int) -> Sequence[RequestLog]:
    """Newest first (highest id first), or oldest first when following (after_id set)."""
    statement = select(RequestLog)
    if where.app_id is not None:
        statement = statement.where(col(RequestLog.app_id) == where.app_id)
    if where.since is not None:
        statement = statement.where(col(RequestLog.time) >= where.since)
    if where.until is not None:
        statement = statement.where(col(RequestLog.time) < where.until)
    if where.outcome is not None:
        statement = statement.where(col(RequestLog.outcome) == where.outcome)
    if where.before_id is not None:
        statement = statement.where(col(RequestLog.id) < where.before_id)
    if where.after_id is not None:
        statement = statement.where(col(RequestLog.id) > where.after_id)
        statement = statement.order_by(col(RequestLog.id).asc())
    else:
        statement = statement.order_by(col(RequestLog.id).desc())
    result = await session.exec(statement.limit(limit))
    return result.all()
