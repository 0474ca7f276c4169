"""Child processes for the tests and benchmarks: free ports, clean environments, readiness and
a clean stop.

Every server the suite starts (``orchestra serve``, ``orchestra fake-openai``, ``redis-server``,
nginx) is a ``Proc``: a child on a free port whose output goes to a file under the test's
``logs`` folder, polled over HTTP until it answers, terminated (then killed) when it is done.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx

HOST = "127.0.0.1"
#: The ``orchestra`` console script of the running venv.
ORCHESTRA = Path(sys.executable).parent / "orchestra"
#: How long a child may take to answer its readiness path (imports, migrations, a busy machine).
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0


def free_port() -> int:
    """A TCP port nothing listens on right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def child_env(settings: Mapping[str, object]) -> dict[str, str]:
    """A minimal environment: nothing of the developer's ORCHESTRA_* leaks into a child."""
    env = {"PATH": os.defpath, "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1"}
    env.update({f"ORCHESTRA_{name.upper()}": str(value) for name, value in settings.items()})
    return env


@dataclass
class Proc:
    """A child process (HTTP on ``url`` when it serves); its stderr goes to ``log``, and so does
    its stdout unless it was started with ``stdout_apart`` (then ``log`` with ``.out``)."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    port: int

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def stderr_path(self) -> Path:
        return self.log

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stderr(self) -> str:
        return self.output()

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to clean anything up."""
        if self.alive():
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=STOP_TIMEOUT_S)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within STOP_TIMEOUT_S."""
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT_S)

    def check_alive(self) -> None:
        if not self.alive():
            raise RuntimeError(
                f"{self.name} exited with {self.process.returncode}:\n{self.output()[-4000:]}"
            )

    def wait_ready(self, path: str, *, timeout: float = START_TIMEOUT_S) -> None:
        wait_http([self], path, timeout=timeout)

    async def wait_ready_async(self, path: str, *, timeout: float = START_TIMEOUT_S) -> None:
        await wait_http_async([self], path, timeout=timeout)


def spawn(
    name: str,
    argv: Sequence[str],
    env: Mapping[str, str],
    logs: Path,
    port: int,
    *,
    stdout_apart: bool = False,
) -> Proc:
    """Start ``argv`` (not waiting for it); its output in ``logs/NAME.log`` (or ``.err`` and
    ``.out`` with ``stdout_apart``, for tests that read the JSON logs on stderr alone)."""
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / (f"{name}.err" if stdout_apart else f"{name}.log")
    with contextlib.ExitStack() as files:
        err = files.enter_context(log.open("wb"))
        out = files.enter_context(log.with_suffix(".out").open("wb")) if stdout_apart else None
        process = subprocess.Popen(
            [str(arg) for arg in argv],
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out if out is not None else err,
            stderr=err if out is not None else subprocess.STDOUT,
        )
    return Proc(name, process, log, port)


def spawn_orchestra(
    name: str,
    args: Sequence[str],
    env: Mapping[str, str],
    logs: Path,
    *,
    stdout_apart: bool = False,
) -> Proc:
    """``orchestra ARGS --port P`` on a free port (``serve``, ``fake-openai``)."""
    port = free_port()
    argv = [str(ORCHESTRA), *args, "--port", str(port)]
    return spawn(name, argv, env, logs, port, stdout_apart=stdout_apart)


def _pending(procs: Sequence[Proc], path: str, http: httpx.Client) -> list[Proc]:
    waiting = []
    for proc in procs:
        proc.check_alive()
        try:
            if http.get(f"{proc.url}{path}").status_code != 200:
                waiting.append(proc)
        except httpx.TransportError:
            waiting.append(proc)
    return waiting


def _late(procs: Sequence[Proc], path: str, timeout: float) -> RuntimeError:
    names = ", ".join(p.name for p in procs)
    tail = "\n".join(f"--- {p.name}:\n{p.output()[-3000:]}" for p in procs)
    return RuntimeError(f"{names} did not answer {path} within {timeout} s:\n{tail}")


def wait_http(procs: Sequence[Proc], path: str, *, timeout: float = START_TIMEOUT_S) -> None:
    """Until every one of ``procs`` answers 200 on ``path`` (they start in parallel)."""
    deadline = time.monotonic() + timeout
    pending = list(procs)
    with httpx.Client(timeout=1.0, trust_env=False) as http:
        while pending := _pending(pending, path, http):
            if time.monotonic() > deadline:
                raise _late(pending, path, timeout)
            time.sleep(0.05)


async def wait_http_async(
    procs: Sequence[Proc], path: str, *, timeout: float = START_TIMEOUT_S
) -> None:
    """``wait_http`` that keeps the event loop running (one probe at a time in a thread)."""
    deadline = time.monotonic() + timeout
    pending = list(procs)
    with httpx.Client(timeout=1.0, trust_env=False) as http:
        while pending := await anyio.to_thread.run_sync(_pending, pending, path, http):
            if time.monotonic() > deadline:
                raise _late(pending, path, timeout)
            await anyio.sleep(0.05)


@contextmanager
def stopping() -> Iterator[list[Proc]]:
    """A list for the processes a fixture starts: each is stopped on the way out, last first,
    whatever happened."""
    started: list[Proc] = []
    try:
        yield started
    finally:
        for proc in reversed(started):
            proc.stop()
