"""Running the ``orchestra`` command: as a child process, or in this process through Click."""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio

from tests.support.processes import ORCHESTRA


class CliFailed(AssertionError):
    """``orchestra ARGS`` exited non-zero (an AssertionError: a test that needed it fails)."""


def _check(args: Sequence[str], code: int, stdout: object, stderr: object) -> None:
    if code != 0:
        raise CliFailed(f"orchestra {' '.join(args)} exited {code}: {stdout!r} {stderr!r}")


def run_cli(
    args: Sequence[str],
    env: Mapping[str, str],
    *,
    input: str | None = None,
    timeout: float = 60.0,
    cwd: Path | None = None,
) -> str:
    """Run `orchestra ARGS` to completion (outside any event loop); its stdout."""
    done = subprocess.run(
        [str(ORCHESTRA), *args],
        env=dict(env),
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=cwd,
    )
    _check(args, done.returncode, done.stdout, done.stderr)
    return done.stdout


async def run_cli_async(args: Sequence[str], env: Mapping[str, str]) -> str:
    """``run_cli`` from async code: the event loop keeps running while the child does."""
    done = await anyio.run_process([str(ORCHESTRA), *args], env=dict(env), check=False)
    _check(args, done.returncode, done.stdout, done.stderr)
    return done.stdout.decode()


@functools.cache
def click_command(typer_app: Any = None) -> Any:
    """The Click command of the CLI (``cli.main.app`` by default), built once: Typer rebuilds it,
    evaluating every annotation, on each invoke (~0.1 s)."""
    import typer.main

    if typer_app is None:
        from cli.main import app as typer_app
    return typer.main.get_command(typer_app)
