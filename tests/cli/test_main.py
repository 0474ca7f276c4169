from __future__ import annotations

import subprocess
import sys

from cli import main
from gateway import __version__
from tests.cli.conftest import Orchestra, ok

COMMANDS = {
    "init": [],
    "db": ["upgrade"],
    "apps": ["add", "list", "show", "update", "disable", "enable", "remove"],
    "tokens": ["issue", "list", "revoke"],
    "keys": ["set", "rotate-master"],
    "quotas": ["set", "show"],
}


def test_help_lists_every_command(orchestra: Orchestra) -> None:
    result = ok(orchestra("--help"))
    for group, subcommands in COMMANDS.items():
        assert group in result.stdout
        if subcommands:
            sub_help = ok(orchestra(group, "--help")).stdout
            for name in subcommands:
                assert name in sub_help, (group, name)


def test_no_arguments_shows_the_help(orchestra: Orchestra) -> None:
    result = orchestra()
    assert "Usage" in result.output
    assert "apps" in result.output


def test_version(orchestra: Orchestra) -> None:
    assert ok(orchestra("--version")).stdout.strip() == f"orchestra {__version__}"


def test_the_command_tree_is_the_documented_contract() -> None:
    import typer.main
    from typer.core import TyperGroup

    click_app = typer.main.get_command(main.app)
    assert isinstance(click_app, TyperGroup)
    for group, subcommands in COMMANDS.items():
        assert group in click_app.commands, group
        # The foundation's commands and sub-commands exist (later issues may add more).
        assert set(subcommands) <= set(getattr(click_app.commands[group], "commands", {}))


def test_python_dash_m_cli_works() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cli", "--version"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"orchestra {__version__}"


def test_an_unknown_command_is_a_usage_error(orchestra: Orchestra) -> None:
    result = orchestra("frobnicate")
    assert result.exit_code == 2
    assert "No such command" in result.stderr
