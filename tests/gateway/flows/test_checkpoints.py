"""The checkpointer lives in the gateway's own database (SQLite file, or PostgreSQL schema)."""

from __future__ import annotations

import sqlite3

import psycopg
import pytest
import sqlalchemy as sa

from gateway.core.errors import ConfigurationError
from gateway.flows.checkpoints import (
    is_storage_failure,
    open_checkpoints,
    postgres_conninfo,
    sqlite_path,
)
from gateway.storage.database import Database
from tests.conftest import POSTGRES_URL, PostgresSchema

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite+aiosqlite:////srv/orchestra/orchestra.db", "/srv/orchestra/orchestra.db"),
        ("sqlite+aiosqlite:///relative.db?timeout=5", "relative.db"),
        ("sqlite:///x.db", "x.db"),
        ("sqlite+aiosqlite://", ":memory:"),
        ("sqlite+aiosqlite:///:memory:", ":memory:"),
    ],
)
def test_the_sqlite_file_of_the_gateway_url(url: str, path: str) -> None:
    assert sqlite_path(url) == path


@pytest.mark.parametrize(
    ("url", "conninfo"),
    [
        (
            "postgresql+asyncpg://postgres@127.0.0.1:5432/test",
            "postgresql://postgres@127.0.0.1:5432/test",
        ),
        (
            "postgresql+asyncpg://u:p%40ss@db.internal/orchestra?ssl=require&prepared_statement_cache_size=0",
            "postgresql://u:p%40ss@db.internal/orchestra?sslmode=require",
        ),
        ("postgresql://u@h/d?application_name=orc", "postgresql://u@h/d?application_name=orc"),
    ],
)
def test_the_libpq_conninfo_of_the_gateway_url(url: str, conninfo: str) -> None:
    assert postgres_conninfo(url) == conninfo


async def test_another_database_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="mysql"):
        await open_checkpoints("mysql+aiomysql://u@h/d", schema=None)


def test_database_failures_are_recognised() -> None:
    assert is_storage_failure(sqlite3.OperationalError("database is locked"))
    assert is_storage_failure(psycopg.OperationalError("connection refused"))
    assert not is_storage_failure(KeyError("x"))


def _table_names(connection: sa.Connection) -> set[str]:
    return set(sa.inspect(connection).get_table_names())


async def test_the_checkpoint_tables_sit_beside_the_gateways(database: Database) -> None:
    """Same SQLite file, or same PostgreSQL schema (the fixture's throw-away one)."""
    url, schema = str(database.engine.url), None
    if not database.is_sqlite:
        url = POSTGRES_URL
        async with database.engine.connect() as connection:
            schema = (await connection.execute(sa.text("SELECT current_schema()"))).scalar_one()
    checkpoints = await open_checkpoints(url, schema=schema)
    try:
        config = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
        assert await checkpoints.saver.aget_tuple(config) is None  # type: ignore[arg-type]
    finally:
        await checkpoints.close()
    async with database.engine.connect() as connection:
        tables = await connection.run_sync(_table_names)
    assert "apps" in tables  # the gateway's
    assert {"checkpoints"} <= tables  # and LangGraph's, in the same place


@pytest.mark.postgres
async def test_opening_twice_is_idempotent_on_postgres(postgres_schema: PostgresSchema) -> None:
    for _ in range(2):
        checkpoints = await open_checkpoints(POSTGRES_URL, schema=postgres_schema.name)
        await checkpoints.close()
