from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlmodel import SQLModel

import gateway.storage.database as database_module
import gateway.storage.tables  # noqa: F401  (registers the tables)
from gateway.storage.database import Database

pytestmark = pytest.mark.anyio


def _diff(connection: sa.Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, SQLModel.metadata))


async def test_the_migrated_schema_matches_the_tables(database: Database) -> None:
    """Migrations are the schema's source of truth; the SQLModel tables must not drift from it."""
    async with database.engine.connect() as connection:
        diff = await connection.run_sync(_diff)
    assert diff == []


async def test_migrations_record_the_head_revision(database: Database) -> None:
    config = Config()
    config.set_main_option(
        "script_location", str(Path(database_module.__file__).parent / "migrations")
    )
    script = ScriptDirectory.from_config(config)
    assert len(script.get_heads()) == 1  # one linear history
    async with database.engine.connect() as connection:
        version = (
            await connection.execute(sa.text("SELECT version_num FROM alembic_version"))
        ).all()
    assert version == [(script.get_current_head(),)]


async def test_every_migration_downgrades_and_upgrades_again(database: Database) -> None:
    def down_and_up(connection: sa.Connection) -> set[str]:
        config = Config()
        config.set_main_option(
            "script_location", str(Path(database_module.__file__).parent / "migrations")
        )
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
        left = set(sa.inspect(connection).get_table_names()) - {"alembic_version"}
        command.upgrade(config, "head")
        return left

    async with database.engine.begin() as connection:
        left = await connection.run_sync(down_and_up)
    assert left == set()
    await database.ensure_current()
    async with database.engine.connect() as connection:
        assert await connection.run_sync(_diff) == []
