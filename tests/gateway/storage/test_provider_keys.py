from __future__ import annotations

from datetime import timedelta

import pytest

from gateway.storage import provider_keys as key_rows
from gateway.storage.database import Database
from gateway.storage.tables import ProviderKey, utcnow
from tests.gateway.storage.conftest import MakeApp

pytestmark = pytest.mark.anyio


async def test_upsert_inserts_then_replaces(database: Database, make_app: MakeApp) -> None:
    app = await make_app("demo")
    first = utcnow() - timedelta(minutes=1)
    async with database.session() as session:
        await key_rows.upsert_encrypted_key(
            session, ProviderKey(app_id=app.id, ciphertext="c1", hint="sk-…0001", updated_at=first)
        )
    second = utcnow()
    async with database.session() as session:
        await key_rows.upsert_encrypted_key(
            session, ProviderKey(app_id=app.id, ciphertext="c2", hint="sk-…0002", updated_at=second)
        )
    async with database.session() as session:
        stored = await key_rows.get_encrypted_key(session, app.id)
        every = await key_rows.all_encrypted_keys(session)
    assert stored is not None
    assert (stored.ciphertext, stored.hint, stored.updated_at) == ("c2", "sk-…0002", second)
    assert len(every) == 1


async def test_all_keys_across_apps(database: Database, make_app: MakeApp) -> None:
    apps = [await make_app(name) for name in ("a", "b", "c")]
    async with database.session() as session:
        for app in apps:
            await key_rows.upsert_encrypted_key(
                session,
                ProviderKey(
                    app_id=app.id, ciphertext=f"c-{app.name}", hint="…", updated_at=utcnow()
                ),
            )
    async with database.session() as session:
        every = await key_rows.all_encrypted_keys(session)
        missing = await key_rows.get_encrypted_key(session, "app_missing")
    assert sorted(row.ciphertext for row in every) == ["c-a", "c-b", "c-c"]
    assert missing is None
