"""Rows of the ``apps`` table."""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.storage.tables import App


async def insert_app(session: AsyncSession, app: App) -> App:
    session.add(app)
    await session.flush()
    return app


async def find_app_by_name(session: AsyncSession, name: str) -> App | None:
    result = await session.exec(select(App).where(col(App.name) == name))
    return result.first()


async def find_app_by_id(session: AsyncSession, app_id: str) -> App | None:
    return await session.get(App, app_id)


async def list_apps(session: AsyncSession) -> Sequence[App]:
    result = await session.exec(select(App).order_by(col(App.name)))
    return result.all()


async def delete_app(session: AsyncSession, app: App) -> None:
    await session.delete(app)
    await session.flush()
