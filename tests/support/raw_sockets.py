"""Plain TCP sockets for tests that speak HTTP/1.1 by hand (keep-alive, shutdown)."""

from __future__ import annotations

import socket


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the peer closes ``sock`` (EOF or reset) before its timeout; it reads one byte."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
