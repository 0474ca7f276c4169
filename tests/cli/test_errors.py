"""Errors reach the operator as one line on stderr and a non-zero exit code, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.security.keyring import generate_master_key
from tests.cli.conftest import Orchestra, fails

NEEDS_THE_DATABASE = [
    ["apps", "list"],
    ["apps", "list", "--json"],
    ["apps", "show", "demo"],
    ["apps", "add", "demo"],
    ["apps", "update", "demo", "--model", "gpt-4.1"],
    ["apps", "disable", "demo"],
    ["apps", "enable", "demo"],
    ["apps", "remove", "demo", "--yes"],
    ["tokens", "issue", "demo"],
    ["tokens", "list", "demo"],
    ["tokens", "revoke", "tok_x"],
    ["quotas", "set", "demo", "--rpm", "1"],
    ["quotas", "show", "demo"],
]


@pytest.mark.parametrize("args", NEEDS_THE_DATABASE, ids=" ".join)
def test_an_uninitialised_database_names_the_fix(
    orchestra: Orchestra, home: Path, args: list[str]
) -> None:
    result = fails(orchestra(*args), 5, "The database is not initialised. Run `orchestra init`")
    assert result.stderr.startswith("Error: ")
    assert "Traceback" not in result.output
    assert not (home / "orchestra.db").exists()


@pytest.mark.parametrize(
    ("args", "stdin"),
    [
        (["keys", "set", "demo"], "sk-test\n"),
        (["apps", "add", "demo", "--openai-key-stdin"], "sk-test\n"),
        (["keys", "rotate-master"], None),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else "",
)
def test_key_commands_before_init_name_the_fix(
    orchestra: Orchestra,
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    stdin: str | None,
) -> None:
    # Without a master key, the key is what is missing; with one, the database is.
    fails(orchestra(*args, input=stdin), 5, "Run `orchestra init`")
    monkeypatch.setenv("ORCHESTRA_MASTER_KEY", generate_master_key())
    fails(orchestra(*args, input=stdin), 5, "Run `orchestra init`")
    assert not (home / "orchestra.db").exists()


def test_a_misspelt_setting_fails_every_command(
    orchestra: Orchestra, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "orchestra.toml"
    config.write_text("redis_ulr = 'redis://localhost'\n")
    monkeypatch.setenv("ORCHESTRA_CONFIG", str(config))
    fails(orchestra("apps", "list"), 5, "redis_ulr: Extra inputs are not permitted")


def test_an_unreachable_database(orchestra: Orchestra, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRA_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:1/x")
    fails(orchestra("apps", "list"), 6, "The database is unavailable.")


def test_messages_with_brackets_are_printed_as_typed(orchestra: Orchestra, home: Path) -> None:
    ok_init = orchestra("init")
    assert ok_init.exit_code == 0
    fails(
        orchestra("apps", "add", "demo", "--origin", "http://[bold]x[/bold]"),
        2,
        "Invalid origin 'http://[bold]x[/bold]'",
    )
