"""Rows of the ``apps`` table."""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import col, select, update
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


async def bump_auth_epoch(session: AsyncSession, app_id: str) -> int:
    """Add one to the app's auth epoch (atomically: two changes never share an epoch)."""
    await session.exec(
        update(App).where(col(App.id) == app_id).values(auth_epoch=col(App.auth_epoch) + 1)
    )
    result = await session.exec(select(App.auth_epoch).where(col(App.id) == app_id))
    return int(result.one())


async def auth_epochs(session: AsyncSession, app_ids: Sequence[str]) -> dict[str, int]:
    """The current auth epoch of each of these apps that still exists."""
    if not app_ids:
        return {}
    result = await session.exec(select(App.id, App.auth_epoch).where(col(App.id).in_(app_ids)))
    return {app_id: int(epoch) for app_id, epoch in result.all()}
