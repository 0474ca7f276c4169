"""Rows of the ``client_tokens`` table (digests only, never secrets)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.storage.tables import App, ClientToken


async def insert_token(session: AsyncSession, token: ClientToken) -> ClientToken:
    session.add(token)
    await session.flush()
    return token


async def find_token_with_app(session: AsyncSession, digest: str) -> tuple[ClientToken, App] | None:
    statement = (
        select(ClientToken, App)
        .join(App, col(App.id) == col(ClientToken.app_id))
        .where(col(ClientToken.digest) == digest)
    )
    result = await session.exec(statement)
    row = result.first()
    return None if row is None else (row[0], row[1])


async def find_token(session: AsyncSession, token_id: str) -> ClientToken | None:
    return await session.get(ClientToken, token_id)


async def list_tokens(session: AsyncSession, app_id: str) -> Sequence[ClientToken]:
    statement = (
        select(ClientToken)
        .where(col(ClientToken.app_id) == app_id)
        .order_by(col(ClientToken.created_at), col(ClientToken.id))
    )
    result = await session.exec(statement)
    return result.all()


async def mark_revoked(session: AsyncSession, token: ClientToken, when: datetime) -> None:
    token.revoked_at = when
    session.add(token)
    await session.flush()
