"""The machine's PostgreSQL and Redis, shared by parallel test runs: throw-away schemas, and
the Redis databases (12-15) that tests flush under /tmp/orchestra-redis.lock."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg  # type: ignore[import-untyped]
import redis

from gateway.storage.database import Database

POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
POSTGRES_DSN = "postgresql://postgres@127.0.0.1:5432/test"
POSTGRES_PORT = 5432


async def _execute(statement: str) -> None:
    connection = await asyncpg.connect(POSTGRES_DSN)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def create_schema(name: str) -> None:
    await _execute(f'CREATE SCHEMA "{name}"')


async def drop_schema(name: str) -> None:
    await _execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


async def migrate_schema(name: str, url: str = POSTGRES_URL) -> None:
    """Bring schema ``name`` to the head revision (what `orchestra db upgrade` does)."""
    db = Database.open(url, schema=name)
    try:
        await db.upgrade()
    finally:
        await db.close()


class PostgresSchema:
    """A throw-away schema in the `test` database, so tests never see each other's rows."""

    def __init__(self) -> None:
        self.name = "t_" + secrets.token_hex(6)

    async def create(self) -> None:
        await create_schema(self.name)

    async def drop(self) -> None:
        await drop_schema(self.name)

    async def migrate(self) -> None:
        await migrate_schema(self.name)


def flush_redis_db(url: str) -> None:
    """Empty the Redis database of ``url`` (only 12-15: the machine's others are not ours)."""
    with redis.Redis.from_url(url, socket_timeout=5) as client:
        client.flushdb()


@contextmanager
def scratch_stores(redis_url: str) -> Iterator[str]:
    """A new PostgreSQL schema (its name) and an empty Redis database for a set of processes
    that share them; both are cleared again afterwards. Outside any event loop."""
    schema = "t_" + secrets.token_hex(6)
    flush_redis_db(redis_url)
    asyncio.run(create_schema(schema))
    try:
        yield schema
    finally:
        asyncio.run(drop_schema(schema))
        flush_redis_db(redis_url)
