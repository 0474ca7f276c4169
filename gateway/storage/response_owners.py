"""Rows of ``response_owners``: which app (and user) created a stored response."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.storage.tables import ResponseOwner


async def insert_owner(session: AsyncSession, row: ResponseOwner) -> bool:
    """Store the owner; False when the id already has one (kept: the first owner wins)."""
    try:
        async with session.begin_nested():
            session.add(row)
            await session.flush()
    except IntegrityError:
        return False
    return True


async def find_owner(session: AsyncSession, response_id: str) -> ResponseOwner | None:
    result = await session.exec(
        select(ResponseOwner).where(col(ResponseOwner.response_id) == response_id)
    )
    return result.first()


async def delete_owner(session: AsyncSession, response_id: str) -> None:
    await session.exec(delete(ResponseOwner).where(col(ResponseOwner.response_id) == response_id))


async def delete_owners_before(session: AsyncSession, cutoff: datetime) -> int:
    result = await session.exec(delete(ResponseOwner).where(col(ResponseOwner.created_at) < cutoff))
    return int(getattr(result, "rowcount", 0) or 0)
