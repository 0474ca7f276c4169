from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway.core.errors import NotInitialised, StorageUnavailable
from gateway.storage.database import Database
from tests.conftest import POSTGRES_URL, PostgresSchema

pytestmark = pytest.mark.anyio

EXPECTED_TABLES = {"apps", "client_tokens", "provider_keys", "quotas", "request_logs"}


async def _tables(db: Database) -> set[str]:
    async with db.engine.connect() as connection:
        names = await connection.run_sync(lambda c: sa.inspect(c).get_table_names())
    return set(names)


async def test_migrations_create_every_table_and_are_idempotent(database: Database) -> None:
    assert await _tables(database) >= EXPECTED_TABLES
    await database.upgrade()  # a second run changes nothing and does not fail
    await database.ensure_current()


async def test_an_uninitialised_sqlite_file_is_reported_and_not_created(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "orchestra.db"
    db = Database.open(f"sqlite+aiosqlite:///{path}")
    with pytest.raises(NotInitialised, match="orchestra init"):
        await db.ensure_current()
    assert not path.exists()
    await db.close()


@pytest.mark.postgres
async def test_an_empty_postgres_schema_is_not_initialised(
    postgres_schema: PostgresSchema,
) -> None:
    db = Database.open(POSTGRES_URL, schema=postgres_schema.name)
    with pytest.raises(NotInitialised):
        await db.ensure_current()
    await db.upgrade()
    await db.ensure_current()
    assert await _tables(db) >= EXPECTED_TABLES
    await db.close()


async def test_an_unreachable_database_is_unavailable_not_a_crash() -> None:
    db = Database.open("postgresql+asyncpg://postgres@127.0.0.1:1/test")
    assert await db.ping() is False
    with pytest.raises(StorageUnavailable):
        await db.ensure_current()
    await db.close()
