"""Rows of the ``provider_keys`` table (ciphertext only)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.storage.tables import ProviderKey


async def upsert_encrypted_key(session: AsyncSession, key: ProviderKey) -> None:
    existing = await session.get(ProviderKey, key.app_id)
    if existing is None:
        session.add(key)
    else:
        existing.ciphertext = key.ciphertext
        existing.hint = key.hint
        existing.updated_at = key.updated_at
        session.add(existing)
    await session.flush()


async def get_encrypted_key(session: AsyncSession, app_id: str) -> ProviderKey | None:
    return await session.get(ProviderKey, app_id)


async def all_encrypted_keys(session: AsyncSession) -> Sequence[ProviderKey]:
    result = await session.exec(select(ProviderKey).with_for_update())
    return result.all()
