"""Rows of the ``request_logs`` table: one per interaction, appended in batches."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import case, delete, func, insert
from sqlalchemy import exc as sa_exc
from sqlalchemy import select as sa_select
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.storage.tables import Feedback, RequestLog

#: Outcomes of a request that gave an answer (whole, or cut by a quota or by the client): what
#: can be rated (POST /feedback) and what usage counts as answers.
ANSWERED = ("completed", "quota_stopped", "client_disconnected")


class RowsRefused(Exception):
    """The database refused these rows (a value it cannot hold), not the connection: retrying
    them as they are fails again. The unit of work is rolled back; nothing was written."""


def _column_attrs() -> list[Any]:
    return list(sa.inspect(RequestLog).column_attrs)


def _text_widths() -> dict[str, int | None]:
    """Every text column and its width (None: unbounded), by attribute name."""
    widths: dict[str, int | None] = {}
    for attr in _column_attrs():
        column_type = attr.columns[0].type
        # SQLModel's AutoString wraps a String.
        if isinstance(column_type, sa.types.TypeDecorator):
            column_type = column_type.impl_instance
        if isinstance(column_type, sa.String):
            widths[attr.key] = column_type.length
    return widths


def _int_ranges() -> dict[str, int]:
    """Every integer column but the id and its largest value, by attribute name."""
    ranges: dict[str, int] = {}
    for attr in _column_attrs():
        column = attr.columns[0]
        if isinstance(column.type, sa.Integer) and not column.primary_key:
            wide = isinstance(column.type, sa.BigInteger)
            ranges[attr.key] = 2**63 - 1 if wide else 2**31 - 1
    return ranges


_TEXT_WIDTHS = _text_widths()
_INT_RANGES = _int_ranges()
#: Attributes whose column has another name (request_metadata is the column "metadata"): a Core
#: insert takes column names and silently ignores other keys.
_RENAMED = tuple(
    (attr.key, attr.columns[0].name) for attr in _column_attrs() if attr.key != attr.columns[0].name
)
#: What a refused row is written without: the caller's free text and metadata.
_FREE_FORM = ("prompt_text", "answer_text", "request_metadata", "origin")


def storable(row: Mapping[str, object]) -> dict[str, object]:
    """The row, by column name, with NUL characters replaced, strings cut to their column's
    width and counts clamped to their column's range.

    PostgreSQL refuses NULs and long strings, both refuse integers past their column: one refused
    row fails its whole batch (the recorder then splits it). A prompt, an answer or an Origin
    header must not stop all logging.
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
    for key, largest in _INT_RANGES.items():
        value = fixed.get(key)
        if type(value) is int and not -largest <= value <= largest:
            fixed[key] = largest if value > 0 else -largest
    for key, column in _RENAMED:
        if key in fixed:
            fixed[column] = fixed.pop(key)
    return fixed


def sanitized(row: Mapping[str, object]) -> dict[str, object]:
    """What can be kept of a row the database refused: no free text or metadata, counts that
    are non-negative integers, finite durations and cost."""
    kept = dict(row)
    for key in _FREE_FORM:
        kept[key] = None
    for key in _INT_RANGES:
        value = kept.get(key)
        kept[key] = value if type(value) is int and value >= 0 else 0
    for key in ("duration_ms", "cost_usd"):
        value = kept.get(key)
        kept[key] = value if type(value) is float and math.isfinite(value) else 0.0
    ttft = kept.get("ttft_ms")
    kept["ttft_ms"] = ttft if type(ttft) is float and math.isfinite(ttft) else None
    return kept


#: A Core insert: the ORM's bulk path costs several times more per batch, and rows of this
#: append-only table never become objects in a session.
_INSERT = insert(cast(sa.Table, RequestLog.__table__))  # type: ignore[attr-defined]


def _refused(exc: Exception) -> bool:
    """A data error (the rows), not a lost connection or a busy database (the moment)."""
    if isinstance(exc, (sa_exc.DataError, sa_exc.IntegrityError)):
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return False
        # PostgreSQL's classes 22 (data exception) and 23 (integrity constraint violation);
        # asyncpg reports a value it cannot encode (an int past its column) as a ValueError.
        sqlstate = str(getattr(exc.orig, "sqlstate", None) or "")
        cause = getattr(exc.orig, "__cause__", None)
        return sqlstate[:2] in ("22", "23") or isinstance(cause, ValueError)
    # Values a driver or a bind processor could not convert (SQLite: OverflowError for an
    # integer past 64 bits; JSON: a value it cannot encode), raw or wrapped by SQLAlchemy.
    return isinstance(exc, (sa_exc.StatementError, OverflowError, ValueError, TypeError))


async def append_logs(session: AsyncSession, rows: Sequence[Mapping[str, object]]) -> None:
    """Insert ``rows`` (InteractionRecord.row() mappings); RowsRefused if the database refused
    their values (then nothing was written)."""
    if not rows:
        return
    try:
        await session.execute(_INSERT, [storable(row) for row in rows])
    except Exception as exc:
        if _refused(exc):
            raise RowsRefused(type(exc).__name__) from exc
        raise


@dataclass(frozen=True, slots=True)
class LogFilter:
    app_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    outcome: str | None = None
    #: Only one end user's records.
    user: str | None = None
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
    if where.user is not None:
        statement = statement.where(col(RequestLog.user) == where.user)
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
    #: With ``by_user``: the end user (None: calls made with the app token).
    user: str | None = None
    #: Answers (``ANSWERED`` outcomes), and how many of them were rated up and down.
    answers: int = 0
    rated_up: int = 0
    rated_down: int = 0

    @property
    def rated_share(self) -> float | None:
        """The share of answers rated (None: no answers)."""
        return (self.rated_up + self.rated_down) / self.answers if self.answers else None


async def sum_usage(
    session: AsyncSession, *, since: datetime, app_id: str | None = None, by_user: bool = False
) -> list[UsageRow]:
    rejected = case((col(RequestLog.outcome) == "rejected", 1), else_=0)
    quota = case((col(RequestLog.error_code) == "quota_exceeded", 1), else_=0)
    answered = case((col(RequestLog.outcome).in_(ANSWERED), 1), else_=0)
    up = case((col(Feedback.score) == 1, 1), else_=0)
    down = case((col(Feedback.score) == -1, 1), else_=0)
    keys: list[Any] = [col(RequestLog.app_name)]
    if by_user:
        keys.append(col(RequestLog.user))
    statement = (
        sa_select(  # sqlmodel's select() is typed for at most four columns
            *keys,
            func.count(),
            func.coalesce(func.sum(RequestLog.prompt_tokens), 0),
            func.coalesce(func.sum(RequestLog.completion_tokens), 0),
            func.coalesce(func.sum(RequestLog.cost_usd), 0.0),
            func.coalesce(func.sum(rejected), 0),
            func.coalesce(func.sum(quota), 0),
            func.coalesce(func.sum(answered), 0),
            func.coalesce(func.sum(up), 0),
            func.coalesce(func.sum(down), 0),
        )
        .select_from(RequestLog)
        .outerjoin(Feedback, col(Feedback.request_id) == col(RequestLog.request_id))
        .where(col(RequestLog.time) >= since, col(RequestLog.app_name).is_not(None))
        .group_by(*keys)
        .order_by(*keys)
    )
    if app_id is not None:
        statement = statement.where(col(RequestLog.app_id) == app_id)
    result = await session.execute(statement)
    rows = []
    for found in result.all():
        name, user = found[0], found[1] if by_user else None
        n, p, c, cost, rej, q, answers, up_n, down_n = found[-9:]
        rows.append(
            UsageRow(
                str(name),
                int(n),
                int(p),
                int(c),
                float(cost),
                int(rej),
                int(q),
                user,
                int(answers),
                int(up_n),
                int(down_n),
            )
        )
    return rows


async def record_owner(
    session: AsyncSession, request_id: str
) -> tuple[str | None, str | None] | None:
    """``(app_id, user)`` of the request's record if it gave an answer (``ANSWERED``); None
    when no such record has this request id."""
    result = await session.execute(
        sa_select(col(RequestLog.app_id), col(RequestLog.user))
        .where(col(RequestLog.request_id) == request_id, col(RequestLog.outcome).in_(ANSWERED))
        .limit(1)
    )
    found = result.first()
    return None if found is None else (found[0], found[1])


async def delete_logs_before(session: AsyncSession, cutoff: datetime) -> int:
    result = await session.exec(delete(RequestLog).where(col(RequestLog.time) < cutoff))
    return int(getattr(result, "rowcount", 0) or 0)
