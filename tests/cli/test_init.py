from __future__ import annotations

import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from gateway.security.keyring import generate_master_key
from tests.cli.conftest import Orchestra, add_app, fails, json_of, ok
from tests.conftest import PostgresSchema

TABLES = {"apps", "client_tokens", "provider_keys", "quotas", "request_logs", "alembic_version"}


def _tables(db_file: Path) -> set[str]:
    with sqlite3.connect(db_file) as connection:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    connection.close()
    return {name for (name,) in rows}


def test_init_creates_the_home_the_master_key_and_the_schema(
    orchestra: Orchestra, home: Path
) -> None:
    assert not home.exists()
    result = ok(orchestra("init"))
    key_file = home / "master.key"
    assert home.is_dir()
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(key_file.read_text().strip()) == 44  # one Fernet key
    assert _tables(home / "orchestra.db") >= TABLES
    assert "Master key created" in result.stdout
    assert "Database ready" in result.stdout
    assert key_file.read_text().strip() not in result.output


def test_init_is_idempotent(orchestra: Orchestra, home: Path) -> None:
    ok(orchestra("init"))
    key = (home / "master.key").read_text()
    add_app(orchestra, "demo", key="sk-test")
    result = ok(orchestra("init"))
    assert "Master key kept" in result.stdout
    assert (home / "master.key").read_text() == key
    assert [app["name"] for app in json_of(orchestra("apps", "list", "--json"))] == ["demo"]


def test_init_with_a_configured_master_key_writes_no_key_file(
    orchestra: Orchestra, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCHESTRA_MASTER_KEY", generate_master_key())
    result = ok(orchestra("init"))
    assert "ORCHESTRA_MASTER_KEY" in result.stdout
    assert not (home / "master.key").exists()
    assert _tables(home / "orchestra.db") >= TABLES


def test_init_refuses_a_malformed_master_key(
    orchestra: Orchestra, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCHESTRA_MASTER_KEY", "this-is-not-a-fernet-key")
    result = fails(orchestra("init"), 5, "Master key #1 is malformed")
    assert "this-is-not-a-fernet-key" not in result.output
    assert not (home / "orchestra.db").exists()


def test_init_refuses_a_bad_config_file(
    orchestra: Orchestra, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "orchestra.toml"
    config.write_text('databse_url = "sqlite+aiosqlite:///x.db"\n')
    monkeypatch.setenv("ORCHESTRA_CONFIG", str(config))
    fails(orchestra("init"), 5, "databse_url: Extra inputs are not permitted")
    assert not home.exists()


def test_init_uses_the_config_file(
    orchestra: Orchestra, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "from-toml"
    config = tmp_path / "orchestra.toml"
    config.write_text(f'home = "{elsewhere}"\n')
    monkeypatch.delenv("ORCHESTRA_HOME")
    monkeypatch.setenv("ORCHESTRA_CONFIG", str(config))
    ok(orchestra("init"))
    assert (elsewhere / "master.key").is_file()
    assert (elsewhere / "orchestra.db").is_file()


@pytest.mark.postgres
def test_init_and_apps_on_postgres(
    orchestra: Orchestra, home: Path, postgres_env: PostgresSchema
) -> None:
    result = ok(orchestra("init"))
    assert "postgresql+asyncpg://postgres@127.0.0.1:5432/test" in result.stdout
    assert not (home / "orchestra.db").exists()
    created = add_app(orchestra, "demo", "--origin", "http://localhost:4200", key="sk-test")
    assert created["token"].startswith("orc_")
    assert [a["name"] for a in json_of(orchestra("apps", "list", "--json"))] == ["demo"]
    ok(orchestra("init"))  # idempotent on PostgreSQL too


def test_the_displayed_url_hides_the_password(
    orchestra: Orchestra, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCHESTRA_DATABASE_URL", "postgresql+asyncpg://u:hunter2@127.0.0.1:1/x")
    result = orchestra("db", "upgrade")
    assert result.exit_code == 6
    assert "hunter2" not in result.output
    assert "unavailable" in result.stderr


@pytest.fixture
def missing_schema(monkeypatch: pytest.MonkeyPatch) -> Iterator[PostgresSchema]:
    """ORCHESTRA_DATABASE_SCHEMA naming a PostgreSQL schema that does not exist (dropped after)."""
    from tests.conftest import POSTGRES_URL

    schema = PostgresSchema()  # named, not created
    monkeypatch.setenv("ORCHESTRA_DATABASE_URL", POSTGRES_URL)
    monkeypatch.setenv("ORCHESTRA_DATABASE_SCHEMA", schema.name)
    monkeypatch.setenv("ORCHESTRA_MASTER_KEY", generate_master_key())  # serve checks it first
    try:
        yield schema
    finally:
        anyio.run(schema.drop)


@pytest.mark.postgres
def test_a_missing_schema_is_named_in_one_line_and_created_by_init(
    orchestra: Orchestra, missing_schema: PostgresSchema
) -> None:
    name = missing_schema.name
    for command in (("apps", "list"), ("serve",)):
        result = fails(
            orchestra(*command),
            5,
            f'The database schema "{name}" does not exist. Run `orchestra init`',
        )
        assert len(result.stderr.strip().splitlines()) <= 2, result.stderr  # no traceback
    result = ok(orchestra("init"))
    assert "Database ready" in result.stdout
    add_app(orchestra, "demo", key="sk-test")
    assert [a["name"] for a in json_of(orchestra("apps", "list", "--json"))] == ["demo"]
    ok(orchestra("init"))  # idempotent: the schema exists now


@pytest.mark.postgres
def test_init_folds_the_schema_name_as_postgresql_does(
    orchestra: Orchestra, missing_schema: PostgresSchema, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCHESTRA_DATABASE_SCHEMA", missing_schema.name.upper())
    ok(orchestra("init"))
    add_app(orchestra, "demo", key="sk-test")
    monkeypatch.setenv("ORCHESTRA_DATABASE_SCHEMA", missing_schema.name)
    assert [a["name"] for a in json_of(orchestra("apps", "list", "--json"))] == ["demo"]


def test_a_schema_name_that_is_not_a_plain_name_is_refused(
    orchestra: Orchestra, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCHESTRA_DATABASE_SCHEMA", 'x"; DROP SCHEMA public; --')
    fails(orchestra("init"), 5, "database_schema")
