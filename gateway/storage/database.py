"""The database handle: one async engine, short units of work, migrations, readiness."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.core.errors import NotInitialised, StorageUnavailable

_MIGRATIONS = Path(__file__).parent / "migrations"
_READONLY = "orchestra_readonly"
_NOT_INITIALISED = (
    "The database is not initialised. Run `orchestra init` (or `orchestra db upgrade`)."
)


def _alembic_config(connection: sa.Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def _upgrade(connection: sa.Connection) -> None:
    command.upgrade(_alembic_config(connection), "head")


def _current_and_head(connection: sa.Connection) -> tuple[str | None, str | None]:
    current = MigrationContext.configure(connection).get_current_revision()
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    return current, head


def _schema_exists(connection: sa.Connection, name: str) -> bool:
    found = connection.execute(
        sa.text("SELECT 1 FROM pg_namespace WHERE nspname = :name"), {"name": name}
    ).first()
    return found is not None


def _create_schema(connection: sa.Connection, name: str) -> None:
    # Looked up first: CREATE SCHEMA IF NOT EXISTS needs the CREATE privilege on the database
    # even when the schema exists (a DBA may have created it for a less privileged role).
    if not _schema_exists(connection, name):
        quoted = connection.dialect.identifier_preparer.quote_identifier(name)
        connection.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {quoted}")


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers (the gateway) and a writer (the CLI) work at once; FKs are off by default.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
    # SQLAlchemy, not the driver, starts transactions (see _on_sqlite_begin).
    dbapi_connection.isolation_level = None


def _on_sqlite_begin(connection: sa.Connection) -> None:
    # A deferred transaction that reads and then writes fails at once with "database is
    # locked" when another connection wrote in between (WAL snapshot rule; the busy timeout
    # does not apply). Units of work that may write therefore take the write lock up front;
    # read-only ones (Database.read) stay deferred, so readers never queue behind writers.
    readonly = connection.get_execution_options().get(_READONLY, False)
    connection.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


class Database:
    def __init__(
        self, engine: AsyncEngine, *, sqlite_path: Path | None = None, schema: str | None = None
    ) -> None:
        self.engine = engine
        self._sqlite_path = sqlite_path
        # PostgreSQL folds the unquoted name of a search_path to lower case (settings.py allows
        # plain names only), so this is the schema's name in the catalog.
        self._schema = schema.lower() if schema else None
        self._readonly_engine = engine.execution_options(**{_READONLY: True})

    @classmethod
    def open(cls, url: str, *, schema: str | None = None, pool_size: int = 10) -> Database:
        """Open (lazily) the database at ``url``; ``schema`` is a PostgreSQL search_path."""
        if url.startswith("sqlite"):
            path = url.split("///", 1)[-1].split("?", 1)[0]
            # A fixed pool: every aiosqlite connection is a thread, and opening overflow
            # connections under load would start threads on the event loop.
            engine = create_async_engine(
                url, connect_args={"timeout": 30}, pool_size=pool_size, max_overflow=0
            )
            sa.event.listen(engine.sync_engine, "connect", _on_sqlite_connect)
            sa.event.listen(engine.sync_engine, "begin", _on_sqlite_begin)
            return cls(engine, sqlite_path=Path(path) if path and path != ":memory:" else None)
        else:
            connect_args: dict[str, Any] = {}
            if schema:
                connect_args["server_settings"] = {"search_path": schema}
            engine = create_async_engine(
                url,
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_pre_ping=True,
                connect_args=connect_args,
            )
        return cls(engine, schema=schema)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def session(self) -> AbstractAsyncContextManager[AsyncSession]:
        """One short unit of work: committed on success, rolled back on error."""
        return self._unit_of_work(self.engine)

    def read(self) -> AbstractAsyncContextManager[AsyncSession]:
        """A read-only unit of work (on SQLite it never waits for a writer)."""
        return self._unit_of_work(self._readonly_engine)

    @asynccontextmanager
    async def _unit_of_work(self, engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
        try:
            async with AsyncSession(engine, expire_on_commit=False) as session:
                try:
                    yield session
                    await session.commit()
                except BaseException:
                    await session.rollback()
                    raise
        except (OperationalError, DBAPIError, OSError) as exc:
            if _is_connection_error(exc):
                raise StorageUnavailable("The database is unavailable.") from None
            raise

    async def upgrade(self) -> None:
        """Apply every pending migration (idempotent)."""
        if self._sqlite_path is not None:
            self._sqlite_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            async with self.engine.begin() as connection:
                if self._schema is not None:
                    await connection.run_sync(_create_schema, self._schema)
                await connection.run_sync(_upgrade)
        except (OperationalError, DBAPIError, OSError) as exc:
            if _is_connection_error(exc):
                raise StorageUnavailable("The database is unavailable.") from None
            raise

    async def ensure_current(self) -> None:
        """Refuse to work on a database that was never initialised or is behind."""
        if self._sqlite_path is not None and not self._sqlite_path.exists():
            # Checked first so that the check itself does not create an empty database file.
            raise NotInitialised(_NOT_INITIALISED)
        try:
            async with self.engine.connect() as connection:
                current, head = await connection.run_sync(_current_and_head)
                schema_missing = (
                    current is None
                    and self._schema is not None
                    and not await connection.run_sync(_schema_exists, self._schema)
                )
        except (OperationalError, DBAPIError, OSError) as exc:
            if _is_connection_error(exc):
                raise StorageUnavailable("The database is unavailable.") from None
            raise
        if schema_missing:
            raise NotInitialised(
                f'The database schema "{self._schema}" does not exist. '
                "Run `orchestra init`, which creates it."
            )
        if current is None:
            raise NotInitialised(_NOT_INITIALISED)
        if current != head:
            raise NotInitialised(
                f"The database schema is at {current}, this version needs {head}. "
                "Run `orchestra db upgrade`."
            )

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as connection:
                await connection.execute(sa.text("SELECT 1"))
        except (OperationalError, DBAPIError, OSError):
            return False
        return True

    async def close(self) -> None:
        await self.engine.dispose()


def _is_connection_error(exc: BaseException) -> bool:
    if isinstance(exc, OSError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    text = str(exc).lower()
    return any(
        marker in text
        for marker in (
            "connection refused",
            "could not connect",
            "unable to open database",
            "connect call failed",
            "connection was closed",
            "server closed",
        )
    )
