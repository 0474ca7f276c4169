"""The database as an entry point (the CLI) opens it: from the settings, checked or migrated.

The CLI goes through this module and never imports ``gateway.storage`` (import-linter).
"""

from __future__ import annotations

from gateway.settings import Settings
from gateway.storage.database import Database

__all__ = ["Database", "open_database", "upgrade_schema"]


def open_database(settings: Settings, *, pool_size: int = 2) -> Database:
    """A connection pool on the configured database (``close()`` it when done)."""
    return Database.open(
        settings.resolved_database_url, schema=settings.database_schema, pool_size=pool_size
    )


async def upgrade_schema(db: Database) -> None:
    """Apply the pending migrations (`orchestra init`, `orchestra db upgrade`)."""
    await db.upgrade()
