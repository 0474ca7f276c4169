"""Alembic environment: runs on the connection that `Database.upgrade()` hands over."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import gateway.storage.tables  # noqa: F401  (registers the tables on the metadata)

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("Run migrations through `orchestra db upgrade`, which passes a connection.")

context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    render_as_batch=True,  # SQLite cannot ALTER most things; batch mode rebuilds the table
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
