"""Rows of the ``request_logs`` table: one per interaction, appended in batches."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

import sqlalchemy as sa
from sqlalchemy import case, delete, func, insert
from sqlalchemy import select as sa_select
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.storage.tables import RequestLog


def _text_widths() -> dict[str, int | None]:
    """Every text column and its width (None: unbounded), by attribute name."""
    widths: dict[str, int | None] = {}
    for attr in sa.inspect(RequestLog).column_attrs:
        column_type = attr.columns[0].type
        # SQLModel's AutoString wraps a String.
        if isinstance(column_type, sa.types.TypeDecorator):
            column_type = column_type.impl_instance
        if isinstance(column_type, sa.String):
            widths[attr.key] = column_type.length
    return widths


_TEXT_WIDTHS = _text_widths()


def storable(row: Mapping[str, object]) -> dict[str, object]:
    """The row with NUL characters replaced and strings cut to their column's width.

    PostgreSQL refuses both, and one refused row fails its whole batch, which the recorder
    would retry forever: a prompt, an answer or an Origin header must not stop all logging.
    """
    fixed = dict(row)
    for key, width in _TEXT_WIDTHS.items():
        value = fixed.get(key)
        if not isinstance(value, str):
            continue
        if "\x00" in value:
            value = value.replace("\x00", "\ufffd")
        if width is not None and len(value) > width:
            value = value[:width]
        fixed[key] = value
    return fixed


#: A Core insert: the ORM's bulk path costs several times more per batch, and rows of this
#: append-only table never become objects in a session.
_INSERT = insert(cast(sa.Table, RequestLog.__table__))  # type: ignore[attr-defined]


async def append_logs(session: AsyncSession, rows: Sequence[Mapping[str, object]]) -> None:
    if rows:
        await session.execute(_INSERT, [storable(row) for row in rows])


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


@dataclass(frozen=True, slots=True)
class UsageRow:
    app_name: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    rejections: int
    quota_rejections: int


async def sum_usage(
    session: AsyncSession, *, since: datetime, app_id: str | None = None
) -> list[UsageRow]:
    rejected = case((col(RequestLog.outcome) == "rejected", 1), else_=0)
    quota = case((col(RequestLog.error_code) == "quota_exceeded", 1), else_=0)
    statement = (
        sa_select(  # sqlmodel's select() is typed for at most four columns
            col(RequestLog.app_name),
            func.count(),
            func.coalesce(func.sum(RequestLog.prompt_tokens), 0),
            func.coalesce(func.sum(RequestLog.completion_tokens), 0),
            func.coalesce(func.sum(RequestLog.cost_usd), 0.0),
            func.coalesce(func.sum(rejected), 0),
            func.coalesce(func.sum(quota), 0),
        )
        .where(col(RequestLog.time) >= since, col(RequestLog.app_name).is_not(None))
        .group_by(col(RequestLog.app_name))
        .order_by(col(RequestLog.app_name))
    )
    if app_id is not None:
        statement = statement.where(col(RequestLog.app_id) == app_id)
    result = await session.execute(statement)
    return [
        UsageRow(str(name), int(n), int(p), int(c), float(cost), int(rej), int(q))
        for name, n, p, c, cost, rej, q in result.all()
    ]


async def delete_logs_before(session: AsyncSession, cutoff: datetime) -> int:
    result = await session.execute(delete(RequestLog).where(col(RequestLog.time) < cutoff))
    return int(getattr(result, "rowcount", 0) or 0)
