"""Rows of the ``quotas`` table: the limits an operator set for an app."""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.storage.tables import Quota


async def get_quota(session: AsyncSession, app_id: str) -> Quota | None:
    return await session.get(Quota, app_id)


async def save_quota(session: AsyncSession, quota: Quota) -> None:
    session.add(quota)
    await session.flush()
