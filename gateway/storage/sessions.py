"""Rows of ``session_secrets`` and ``session_revocations``, and apps by OpenID issuer."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.storage.tables import App, SessionRevocation, SessionSecret


async def lock_app(session: AsyncSession, app_id: str) -> App | None:
    """The app's row, locked until the unit of work ends (one secret created at a time)."""
    result = await session.exec(select(App).where(col(App.id) == app_id).with_for_update())
    return result.first()


async def secrets_of(session: AsyncSession, app_id: str) -> Sequence[SessionSecret]:
    """Every stored secret of the app, the newest first."""
    result = await session.exec(
        select(SessionSecret)
        .where(col(SessionSecret.app_id) == app_id)
        .order_by(col(SessionSecret.created_at).desc())
    )
    return result.all()


async def all_secrets(session: AsyncSession) -> Sequence[tuple[SessionSecret, str]]:
    """Every stored secret of every app, with its app's name (for a master-key rotation)."""
    result = await session.exec(
        select(SessionSecret, App.name)
        .join(App, col(App.id) == col(SessionSecret.app_id))
        .order_by(col(SessionSecret.app_id), col(SessionSecret.kid))
    )
    return result.all()


async def insert_secret(session: AsyncSession, row: SessionSecret) -> None:
    session.add(row)
    await session.flush()


async def retire_secrets(
    session: AsyncSession, app_id: str, at: datetime, *, valid_until: datetime
) -> None:
    await session.exec(
        update(SessionSecret)
        .where(col(SessionSecret.app_id) == app_id, col(SessionSecret.retired_at).is_(None))
        .values(retired_at=at, valid_until=valid_until)
    )


async def delete_secrets(
    session: AsyncSession, app_id: str, *, expired_at: datetime | None = None
) -> None:
    """Delete the app's secrets (only the retired ones no longer valid at a moment, if given)."""
    statement = delete(SessionSecret).where(col(SessionSecret.app_id) == app_id)
    if expired_at is not None:
        statement = statement.where(col(SessionSecret.valid_until) <= expired_at)
    await session.exec(statement)


async def insert_revocation(session: AsyncSession, row: SessionRevocation) -> None:
    session.add(row)
    await session.flush()


async def live_revocations(
    session: AsyncSession, app_id: str, now: datetime
) -> Sequence[SessionRevocation]:
    result = await session.exec(
        select(SessionRevocation).where(
            col(SessionRevocation.app_id) == app_id, col(SessionRevocation.expires_at) > now
        )
    )
    return result.all()


async def prune_revocations(session: AsyncSession, app_id: str, now: datetime) -> None:
    await session.exec(
        delete(SessionRevocation).where(
            col(SessionRevocation.app_id) == app_id, col(SessionRevocation.expires_at) <= now
        )
    )


async def oidc_directory(session: AsyncSession) -> dict[tuple[str, str], str]:
    """(issuer, audience) -> app id, for every app with OpenID Connect sign-in."""
    result = await session.exec(
        select(App.oidc_issuer, App.oidc_audience, App.id).where(
            col(App.oidc_issuer).is_not(None), col(App.oidc_audience).is_not(None)
        )
    )
    return {
        (issuer, audience): app_id
        for issuer, audience, app_id in result.all()
        if issuer and audience
    }
