"""Shared fixtures: a clean environment, and a real database on SQLite or PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.storage.database import Database
from tests.support.databases import POSTGRES_URL, PostgresSchema

__all__ = ["POSTGRES_URL", "PostgresSchema"]


_PROXY_VARIABLES = frozenset({"https_proxy", "http_proxy", "no_proxy", "all_proxy"})


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's ORCHESTRA_* settings, nor their egress proxy."""
    for name in list(os.environ):
        if name.startswith("ORCHESTRA_") or name.lower() in _PROXY_VARIABLES:
            monkeypatch.delenv(name)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An ORCHESTRA_HOME in a temporary directory, set in the environment."""
    path = tmp_path / "home"
    monkeypatch.setenv("ORCHESTRA_HOME", str(path))
    return path


@pytest.fixture
async def postgres_schema() -> AsyncIterator[PostgresSchema]:
    schema = PostgresSchema()
    await schema.create()
    try:
        yield schema
    finally:
        await schema.drop()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A migrated, empty database on each backend."""
    schema: PostgresSchema | None = None
    if request.param == "sqlite":
        db = Database.open(f"sqlite+aiosqlite:///{tmp_path / 'orchestra.db'}")
    else:
        schema = PostgresSchema()
        await schema.create()
        db = Database.open(POSTGRES_URL, schema=schema.name)
    try:
        await db.upgrade()
        yield db
    finally:
        await db.close()
        if schema is not None:
            await schema.drop()
