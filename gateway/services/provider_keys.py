"""Provider (OpenAI) keys: stored encrypted, decrypted only for the call that needs one."""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.core.errors import ConfigurationError, InvalidRequest, NotFound
from gateway.security.keyring import Keyring
from gateway.services.ttl_cache import TTLCache
from gateway.storage import apps as app_rows
from gateway.storage import provider_keys as key_rows
from gateway.storage.database import Database
from gateway.storage.tables import ProviderKey, utcnow


def checked_key(key: str) -> str:
    key = key.strip()
    if not key:
        raise InvalidRequest("The provider key is empty.")
    if any(c.isspace() for c in key) or len(key) > 512:
        raise InvalidRequest("The provider key is malformed (whitespace inside or too long).")
    return key


def _hint(key: str) -> str:
    # Enough to tell two keys apart in a listing, far too little to use: "sk-…a1b2".
    return (key[:3] + "…" + key[-4:]) if len(key) >= 12 else "…"


async def store_key(session: AsyncSession, keyring: Keyring, *, app_id: str, key: str) -> None:
    row = ProviderKey(
        app_id=app_id,
        ciphertext=keyring.encrypt(key, app_id=app_id),
        hint=_hint(key),
        updated_at=utcnow(),
    )
    await key_rows.upsert_encrypted_key(session, row)


async def set_provider_key(db: Database, keyring: Keyring, *, app_name: str, key: str) -> None:
    key = checked_key(key)
    async with db.session() as session:
        app = await app_rows.find_app_by_name(session, app_name)
        if app is None:
            raise NotFound(f"No app named {app_name!r}. See `orchestra apps list`.")
        await store_key(session, keyring, app_id=app.id, key=key)


async def provider_key_for(db: Database, keyring: Keyring, *, app_id: str) -> str:
    async with db.read() as session:
        row = await key_rows.get_encrypted_key(session, app_id)
    if row is None:
        raise ConfigurationError(
            "This app has no provider key; the operator must run `orchestra keys set APP`."
        )
    return keyring.decrypt(row.ciphertext, app_id=app_id)


async def reencrypt_keys(session: AsyncSession, keyring: Keyring) -> int:
    """Re-encrypt every stored provider key under the keyring's first key (in the caller's
    unit of work); how many. Nothing is written if one cannot be read."""
    rows = await key_rows.all_encrypted_keys(session)
    for row in rows:
        # Decrypt first: checks the app binding before anything is rewritten.
        keyring.decrypt(row.ciphertext, app_id=row.app_id)
        row.ciphertext = keyring.rotate(row.ciphertext)
        row.updated_at = utcnow()
        session.add(row)
    await session.flush()
    return len(rows)


class ProviderKeyCache:
    """Decrypted provider keys kept for ``ttl`` seconds: no database read on the hot path.

    A key set with `orchestra keys set` reaches every replica within ``ttl``. The keys live
    only in this process's memory, as they must anyway to be sent upstream.
    """

    def __init__(self, db: Database, keyring: Keyring, *, ttl: float) -> None:
        self._db = db
        self._keyring = keyring
        self._cache: TTLCache[str, str] = TTLCache(ttl=ttl)

    async def key_for(self, app_id: str) -> str:
        return await self._cache.get(
            app_id, lambda: provider_key_for(self._db, self._keyring, app_id=app_id)
        )
