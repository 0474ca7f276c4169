"""An ASGI app on a real uvicorn server in a background thread of the test process: for the
tests of one component over real sockets, where a child process would cost seconds."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

START_TIMEOUT_S = 5.0


@contextmanager
def serving_in_thread(app: Any, **config: Any) -> Iterator[int]:
    """Serve ``app`` (uvicorn ``config`` options besides) on a free port; the port. The server
    is told to exit, and its thread joined, on the way out."""
    with server_in_thread(app, **config) as (_server, port):
        yield port


@contextmanager
def server_in_thread(app: Any, **config: Any) -> Iterator[tuple[uvicorn.Server, int]]:
    """:func:`serving_in_thread`, with the server itself (to tell it to exit earlier)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    config.setdefault("log_level", "warning")
    config.setdefault("timeout_graceful_shutdown", 1)
    server = uvicorn.Server(uvicorn.Config(app, **config))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.started, "the server did not start"
        port: int = sock.getsockname()[1]
        yield server, port
    finally:
        server.should_exit = True
        thread.join(5)
        sock.close()
