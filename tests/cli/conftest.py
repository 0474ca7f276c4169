"""Run `orchestra` in-process through Typer's CliRunner, against a temporary ORCHESTRA_HOME."""

from __future__ import annotations

import functools
import json
import os
import shutil
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar

import anyio
import pytest
import typer
import typer.main
import typer.testing
from typer.testing import CliRunner, Result

from cli.main import app
from gateway.security.keyring import generate_master_key
from gateway.security.master_key import write_master_key_file
from gateway.settings import load_settings
from gateway.storage.database import Database
from tests.conftest import PostgresSchema

T = TypeVar("T")


class Orchestra(Protocol):
    def __call__(self, *args: str, input: str | None = None) -> Result: ...


@functools.cache
def _command(typer_app: typer.Typer) -> Any:
    # Typer rebuilds the Click tree (evaluating every annotation) on each invoke: ~0.1 s.
    return typer.main.get_command(typer_app)


@pytest.fixture
def orchestra(home: Path, monkeypatch: pytest.MonkeyPatch) -> Orchestra:
    monkeypatch.setattr(typer.testing, "_get_command", _command)
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None) -> Result:
        return runner.invoke(app, list(args), input=input, catch_exceptions=False)

    return invoke


@pytest.fixture(scope="session")
def _initialised_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real `orchestra init`, copied by every test that needs an initialised home."""
    template = tmp_path_factory.mktemp("template") / "home"
    with pytest.MonkeyPatch.context() as patch:
        # Same isolation as the autouse clean_environ, which does not reach session fixtures.
        for name in [n for n in os.environ if n.startswith("ORCHESTRA_")]:
            patch.delenv(name)
        patch.setenv("ORCHESTRA_HOME", str(template))
        patch.setattr(typer.testing, "_get_command", _command)
        ok(CliRunner().invoke(app, ["init"], catch_exceptions=False))
    return template


@pytest.fixture
def initialised(_initialised_template: Path, home: Path) -> Path:
    """A home as `orchestra init` leaves it, with a master key of its own."""
    shutil.copytree(_initialised_template, home)
    write_master_key_file(home / "master.key", [generate_master_key()])
    return home


def ok(result: Result) -> Result:
    assert result.exit_code == 0, f"stdout: {result.stdout!r}\nstderr: {result.stderr!r}"
    return result


def fails(result: Result, exit_code: int, message: str) -> Result:
    """A refused command: the given exit code, the message on stderr and nothing on stdout."""
    assert result.exit_code == exit_code, f"stdout: {result.stdout!r}\nstderr: {result.stderr!r}"
    assert message in " ".join(result.stderr.split()), result.stderr
    assert result.stdout == ""
    return result


def json_of(result: Result) -> Any:
    ok(result)
    return json.loads(result.stdout)


def add_app(orchestra: Orchestra, name: str, *options: str, key: str | None = None) -> Any:
    """`orchestra apps add NAME --json`, with the OpenAI key on stdin when one is given."""
    args = ["apps", "add", name, *options, "--json"]
    if key is not None:
        args.append("--openai-key-stdin")
    return json_of(orchestra(*args, input=None if key is None else key + "\n"))


def with_database(work: Callable[[Database], Awaitable[T]]) -> T:
    """Run a service call against the database the CLI uses (settings from the environment)."""
    settings = load_settings()

    async def main() -> T:
        db = Database.open(settings.resolved_database_url, schema=settings.database_schema)
        try:
            return await work(db)
        finally:
            await db.close()

    return anyio.run(main)


def stored_ciphertexts(home: Path) -> dict[str, str]:
    with sqlite3.connect(home / "orchestra.db") as connection:
        rows = connection.execute("SELECT app_id, ciphertext FROM provider_keys").fetchall()
    connection.close()
    return dict(rows)


@pytest.fixture
def postgres_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[PostgresSchema]:
    """Point the CLI at a throw-away PostgreSQL schema."""
    from tests.conftest import POSTGRES_URL

    schema = PostgresSchema()
    anyio.run(schema.create)
    monkeypatch.setenv("ORCHESTRA_DATABASE_URL", POSTGRES_URL)
    monkeypatch.setenv("ORCHESTRA_DATABASE_SCHEMA", schema.name)
    try:
        yield schema
    finally:
        anyio.run(schema.drop)
