from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.cli.conftest import Orchestra, fails, json_of, ok


def _head() -> str | None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    import gateway.storage.database as database

    config = Config()
    config.set_main_option("script_location", str(Path(database.__file__).parent / "migrations"))
    return ScriptDirectory.from_config(config).get_current_head()


def test_db_upgrade_creates_the_schema_and_is_idempotent(orchestra: Orchestra, home: Path) -> None:
    result = ok(orchestra("db", "upgrade"))
    assert "Database schema is current" in result.stdout
    ok(orchestra("db", "upgrade"))
    with sqlite3.connect(home / "orchestra.db") as connection:
        (version,) = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    connection.close()
    assert version == _head()
    assert json_of(orchestra("apps", "list", "--json")) == []


def test_db_upgrade_on_an_unreachable_database(
    orchestra: Orchestra, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCHESTRA_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:1/x")
    fails(orchestra("db", "upgrade"), 6, "The database is unavailable.")


def test_a_database_behind_the_code_asks_for_an_upgrade(
    orchestra: Orchestra, initialised: Path
) -> None:
    with sqlite3.connect(initialised / "orchestra.db") as connection:
        connection.execute("UPDATE alembic_version SET version_num = '0001'")
    connection.close()
    fails(orchestra("apps", "list"), 5, "Run `orchestra db upgrade`")
