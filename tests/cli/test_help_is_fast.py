"""`orchestra --help` must not import the server stack (FastAPI, Starlette, SQLAlchemy, uvicorn).

Measured by what is imported, not by a clock: `python -X importtime` lists every module the
process imported, so a new eager import of a heavy package fails this test on any machine.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("fastapi", "starlette", "sqlalchemy", "uvicorn")


def _imported_modules(*args: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    modules = set()
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "package":  # the header line
                modules.add(name)
    assert modules, "importtime printed nothing"
    return modules


def _heavy(modules: set[str]) -> set[str]:
    return {m for m in modules if m.split(".")[0] in HEAVY}


def test_the_detector_sees_a_heavy_import() -> None:
    """Guard for the guard: the same measurement does catch SQLAlchemy when it is imported."""
    assert _heavy(_imported_modules("-c", "import sqlalchemy")) >= {"sqlalchemy"}


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["apps", "add", "--help"],
        ["tokens", "issue", "--help"],
        ["keys", "rotate-master", "--help"],
    ],
    ids=" ".join,
)
def test_help_does_not_import_the_server_stack(args: list[str]) -> None:
    modules = _imported_modules("-m", "cli", *args)
    assert "cli.main" in modules
    assert _heavy(modules) == set()


def test_importing_the_cli_does_not_import_the_server_stack() -> None:
    code = (
        "import sys, cli.main\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
