"""A real HTTP forward proxy for the egress tests: Debian's tinyproxy, as a child process.

``ForwardProxy.running(...)`` starts ``tinyproxy -d`` on a free 127.0.0.1 port with its own
configuration and log file; ``requests()`` reads back the request lines it logged
(``CONNECT localhost:4431`` for a tunnel, ``POST http://127.0.0.1:9100/v1/...`` for a
forwarded plain-http request), which is how a test proves that traffic went through it.
``connect_ports`` restricts the ports it tunnels to (others: 403, a refused tunnel), ``user``
and ``password`` make it ask for Basic credentials (407 otherwise).
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

TINYPROXY = shutil.which("tinyproxy") or "/usr/bin/tinyproxy"
START_TIMEOUT_S = 10.0
_REQUEST = re.compile(r"Request \(file descriptor \d+\): (\S+) (\S+) HTTP/1\.[01]")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class ForwardProxy:
    port: int
    log_path: Path
    process: subprocess.Popen[bytes]
    user: str | None = None
    password: str | None = None

    @property
    def url(self) -> str:
        """The proxy URL, with the credentials when it asks for them."""
        auth = "" if self.user is None else f"{self.user}:{self.password}@"
        return f"http://{auth}127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def requests(self) -> list[tuple[str, str]]:
        """(method, target) of every request the proxy received, oldest first."""
        return [(m.group(1), m.group(2)) for m in _REQUEST.finditer(self.log())]

    def tunnels(self) -> list[str]:
        return [target for method, target in self.requests() if method == "CONNECT"]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"tinyproxy exited with {self.process.returncode}: {self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"tinyproxy did not listen on {self.port}: {self.log()}")

    @classmethod
    @contextmanager
    def running(
        cls,
        directory: Path,
        *,
        connect_ports: tuple[int, ...] = (),
        user: str | None = None,
        password: str | None = None,
    ) -> Iterator[ForwardProxy]:
        directory.mkdir(parents=True, exist_ok=True)
        port = _free_port()
        log_path = directory / f"tinyproxy-{port}.log"
        lines = [
            f"Port {port}",
            "Listen 127.0.0.1",
            "Timeout 30",
            f'LogFile "{log_path}"',
            "LogLevel Connect",
            "MaxClients 100",
            *(f"ConnectPort {p}" for p in connect_ports),
        ]
        if user is not None:
            lines.append(f"BasicAuth {user} {password}")
        config = directory / f"tinyproxy-{port}.conf"
        config.write_text("\n".join(lines) + "\n")
        process = subprocess.Popen(
            [TINYPROXY, "-d", "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        proxy = cls(port, log_path, process, user, password)
        try:
            proxy._wait_listening()
            yield proxy
        finally:
            proxy.stop()
