"""The gateway's own HTTP/1.1 client: connections (``connection.py``) and pools (``pool.py``).

Why it exists, what it does and does not do: see ``connection.py``.
"""

from gateway.upstream.wire.connection import (
    MAX_DECODED_READ,
    ConnectFailed,
    Connection,
    ConnectionBroken,
    ConnectTimedOut,
    Dialer,
    ProtocolViolation,
    ReadTimedOut,
    TCPDialer,
    WireError,
)
from gateway.upstream.wire.pool import Pool, Response

__all__ = [
    "MAX_DECODED_READ",
    "ConnectFailed",
    "ConnectTimedOut",
    "Connection",
    "ConnectionBroken",
    "Dialer",
    "Pool",
    "ProtocolViolation",
    "ReadTimedOut",
    "Response",
    "TCPDialer",
    "WireError",
]
