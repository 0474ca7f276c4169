"""A port that is taken: one line naming it and a non-zero exit, at once, every time.

`orchestra serve` used to print "Orchestra gateway on http://…" first, start the whole gateway,
and only then fail to bind, after which uvicorn sometimes never exited (seen hanging for 615 s).
Each command runs here as the real `orchestra` executable in a child process, repeatedly,
because the hang was intermittent.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ORCHESTRA = Path(sys.executable).parent / "orchestra"
#: The bound on one attempt: it exits in about a second; the old failure took 25 s or never.
EXIT_WITHIN_S = 10.0


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port on 127.0.0.1 that another server is listening on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def run_on(port: int, args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.defpath, "LANG": "C.UTF-8", "ORCHESTRA_HOME": str(home)}
    try:
        return subprocess.run(
            [str(ORCHESTRA), *args, "--port", str(port)],
            env=env,
            capture_output=True,
            text=True,
            timeout=EXIT_WITHIN_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"{args} on a busy port still ran after {EXIT_WITHIN_S} s") from exc


def assert_refused(done: subprocess.CompletedProcess[str], port: int) -> None:
    assert done.returncode != 0, done
    error = " ".join(done.stderr.split())
    assert f"127.0.0.1:{port}" in error and "in use" in error, done.stderr
    assert "Traceback" not in done.stderr
    assert "on http://" not in done.stdout, "the server was announced before it was bound"


# How often each command is tried: the old hang came once in a few runs of the gateway; the
# fake has no lifespan to wait for, so fewer runs of it suffice.
@pytest.mark.parametrize(("command", "attempts"), [("serve", 20), ("fake-openai", 5)])
def test_a_busy_port_is_one_error_and_an_exit_every_time(
    command: str, attempts: int, busy_port: int, initialised: Path
) -> None:
    for _ in range(attempts):
        assert_refused(run_on(busy_port, [command], initialised), busy_port)


def test_the_demo_checks_its_port_before_starting_anything(
    busy_port: int, initialised: Path
) -> None:
    for _ in range(3):
        done = run_on(busy_port, ["demo"], initialised)
        assert_refused(done, busy_port)
        assert "--port" in done.stderr  # it says how to pick another one
