"""The listening socket, bound before anything starts, and uvicorn run on it.

Left to itself, uvicorn binds only after the application's lifespan has started (database,
Redis, background tasks); on a busy port it then logs the error, shuts the lifespan down and
exits from inside the event loop, which could wait for those tasks for a long time (once,
615 s). Binding here first makes a busy port one clear error before anything has started, and
the "on http://…" line true when it is printed.
"""

from __future__ import annotations

import errno
import socket
from typing import Any

import typer

from gateway.core.errors import ConfigurationError

#: uvicorn's exit code when the server did not start (uvicorn.config.STARTUP_FAILURE).
STARTUP_FAILURE = 3


def bind(host: str, port: int, *, option: str = "--port") -> socket.socket:
    """A TCP socket bound to ``host:port`` (as uvicorn would bind it), or ConfigurationError."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        where = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
        if exc.errno == errno.EADDRINUSE:
            reason = f"{where} is already in use; stop what listens there or pass another {option}"
        else:
            reason = f"cannot listen on {where}: {exc.strerror or exc}"
        raise ConfigurationError(reason) from None
    sock.set_inheritable(True)  # for uvicorn's worker processes
    return sock


def probe(host: str, port: int, *, option: str = "--port") -> None:
    """Raise ConfigurationError now if ``host:port`` cannot be bound (then release it)."""
    bind(host, port, option=option).close()


def run(sock: socket.socket, app: Any, **options: Any) -> None:
    """``uvicorn.run(app, **options)``, serving on ``sock`` instead of binding one itself."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config(app, **options)
    server = uvicorn.Server(config)
    try:
        if config.workers > 1:
            Multiprocess(config, sockets=[sock]).run()
        else:
            server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
    if config.workers == 1 and not server.started:
        raise typer.Exit(code=STARTUP_FAILURE)
