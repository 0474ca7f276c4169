"""Rows of the ``feedback`` table: one rating per request id, replaced when rated again."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.storage.tables import Feedback

_TABLE: sa.Table = Feedback.__table__  # type: ignore[attr-defined]
_REPLACED = ("app_id", "user", "score", "comment", "rated_at")


async def upsert_feedback(session: AsyncSession, feedback: Feedback) -> None:
    """Insert the rating, or replace the request's earlier one (one statement: two ratings of
    the same request at once do not collide on the key)."""
    values = {name: getattr(feedback, name) for name in ("request_id", *_REPLACED)}
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(_TABLE).values(values)
    statement = statement.on_conflict_do_update(
        index_elements=["request_id"],
        set_={name: getattr(statement.excluded, name) for name in _REPLACED},
    )
    await session.execute(statement)


async def feedback_for(session: AsyncSession, request_ids: Collection[str]) -> dict[str, Feedback]:
    """The ratings of these requests (those rated), by request id."""
    if not request_ids:
        return {}
    result = await session.exec(
        select(Feedback).where(col(Feedback.request_id).in_(list(request_ids)))
    )
    return {row.request_id: row for row in result.all()}


async def delete_feedback_before(session: AsyncSession, cutoff: datetime) -> int:
    """Ratings given before ``cutoff``: their requests are older still (pruned with them)."""
    result = await session.exec(sa.delete(Feedback).where(col(Feedback.rated_at) < cutoff))
    return int(getattr(result, "rowcount", 0) or 0)
