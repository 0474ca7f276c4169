"""LangGraph's checkpointer on the gateway's own database (SQLite file or PostgreSQL).

The gateway's URL is SQLAlchemy's (``sqlite+aiosqlite:///path``, ``postgresql+asyncpg://...``);
the savers want an aiosqlite connection on the same file, or a psycopg conninfo. The savers own
their tables (``checkpoints``, ``writes`` on SQLite; ``checkpoint*`` on PostgreSQL, in
``ORCHESTRA_DATABASE_SCHEMA`` when set) and create them with their own idempotent migrations at
start-up; Alembic does not manage them. On PostgreSQL that start-up step holds an advisory lock,
so the workers of ``orchestra serve --workers N`` never race on it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiosqlite
import psycopg
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from gateway.core.errors import ConfigurationError

#: pg_advisory_lock key held while the PostgreSQL saver migrates its tables.
_SETUP_LOCK = 0x6F72_6368_6B70  # "orchkp"
#: libpq parameters kept from the URL's query (asyncpg's ``ssl`` becomes ``sslmode``).
_LIBPQ_PARAMS = {
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "connect_timeout",
    "application_name",
    "target_session_attrs",
    "passfile",
}


@dataclass(frozen=True, slots=True)
class Checkpoints:
    saver: BaseCheckpointSaver[Any]
    close: Callable[[], Awaitable[None]]


def sqlite_path(url: str) -> str:
    """The file of a ``sqlite[+driver]:///path`` URL (``:memory:`` for an in-memory one)."""
    path = url.split("///", 1)[-1].split("?", 1)[0] if "///" in url else ""
    return path or ":memory:"


def postgres_conninfo(url: str) -> str:
    """A libpq URI for a SQLAlchemy PostgreSQL URL (the ``+driver`` and its options dropped)."""
    parts = urlsplit(url)
    query = []
    for key, value in parse_qsl(parts.query):
        name = "sslmode" if key == "ssl" else key
        if name in _LIBPQ_PARAMS:
            query.append((name, value))
    return urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(query), ""))


def _postgres_kwargs(schema: str | None) -> dict[str, Any]:
    # What AsyncPostgresSaver expects of its connections (it checks autocommit and dict rows).
    kwargs: dict[str, Any] = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}
    if schema:
        kwargs["options"] = f"-c search_path={schema}"
    return kwargs


async def _open_sqlite(path: str) -> Checkpoints:
    connection = await aiosqlite.connect(path, timeout=30)
    # The same trade-off as the gateway's own connections (storage/database.py): WAL, no fsync
    # per commit.
    await connection.execute("PRAGMA synchronous=NORMAL")
    saver = AsyncSqliteSaver(connection)
    await saver.setup()
    return Checkpoints(saver, connection.close)


async def _open_postgres(conninfo: str, schema: str | None, pool_size: int) -> Checkpoints:
    kwargs = _postgres_kwargs(schema)
    async with await psycopg.AsyncConnection.connect(conninfo, **kwargs) as connection:
        await connection.execute("SELECT pg_advisory_lock(%s)", (_SETUP_LOCK,))
        await AsyncPostgresSaver(connection).setup()
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        conninfo,
        kwargs=kwargs,
        min_size=1,
        max_size=pool_size,
        open=False,
        check=AsyncConnectionPool.check_connection,
    )
    await pool.open(wait=True)
    return Checkpoints(AsyncPostgresSaver(pool), pool.close)


async def open_checkpoints(
    database_url: str, *, schema: str | None, pool_size: int = 4
) -> Checkpoints:
    """The checkpointer on the database at ``database_url``, its tables ready; close it after."""
    if database_url.startswith("sqlite"):
        return await _open_sqlite(sqlite_path(database_url))
    if database_url.startswith("postgresql"):
        return await _open_postgres(postgres_conninfo(database_url), schema, pool_size)
    raise ConfigurationError(
        f"Workflows need SQLite or PostgreSQL, not {database_url.split(':')[0]!r}."
    )


def is_storage_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is the checkpointer's database failing (connection lost, locked...)."""
    return isinstance(exc, psycopg.OperationalError | sqlite3.OperationalError)
