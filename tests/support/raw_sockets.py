"""Plain TCP sockets for tests that speak HTTP/1.1 by hand (keep-alive, shutdown)."""

from __future__ import annotations

import socket


def connect(port: int, *, timeout: float) -> socket.socket:
    """A connection to 127.0.0.1:``port`` that sends each write at once (no Nagle delay)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_answer(sock: socket.socket) -> tuple[list[bytes], bytes]:
    """One answer's head lines (lowercased) and its ``Content-Length`` body; ([], b"") if the
    server closed the connection before a head."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        if not chunk:
            return [], b""
        received += chunk
    head, body = received.split(b"\r\n\r\n", 1)
    lines = head.lower().split(b"\r\n")
    length = int(next(line.split(b":")[1] for line in lines if line.startswith(b"content-length")))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return lines, body


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the peer closes ``sock`` (EOF or reset) before its timeout; it reads one byte."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
