"""The connect-time half of the SSRF rules (see gateway.core.egress): checked after DNS."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Iterable

from gateway.core.egress import is_forbidden_address
from gateway.core.errors import UpstreamUnavailable
from gateway.upstream.wire import ConnectFailed, Connection, Dialer


async def resolve(host: str, port: int) -> list[str]:
    """The addresses of ``host``, in the resolver's order (a seam for the tests)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class GuardedDialer:
    """Resolves, checks and connects to the checked address (no second lookup to rebind)."""

    def __init__(self, inner: Dialer, allowed_hosts: Iterable[str]) -> None:
        self.inner = inner
        self._allowed = frozenset(h.lower() for h in allowed_hosts)

    async def check(self, host: str, port: int) -> list[str] | None:
        """The addresses ``host`` may be reached at (None: allowed by name, not resolved).

        Raises UpstreamUnavailable when every address is forbidden, ConnectFailed when the
        name does not resolve.
        """
        if host.lower() in self._allowed:
            return None
        try:
            addresses = await resolve(host, port)
        except OSError:
            raise ConnectFailed(f"cannot resolve {host}") from None
        allowed = [a for a in addresses if not is_forbidden_address(ipaddress.ip_address(a))]
        if not allowed:
            raise UpstreamUnavailable(
                f"The upstream {host} resolves to a private or link-local address; refused "
                "(list it in allowed_upstream_hosts if that is intended)."
            )
        return list(dict.fromkeys(allowed))

    async def dial(
        self,
        host: str,
        port: int,
        *,
        tls: ssl.SSLContext | None,
        server_hostname: str | None,
        timeout: float,
    ) -> Connection:
        allowed = await self.check(host, port)
        if allowed is None:
            return await self.inner.dial(
                host, port, tls=tls, server_hostname=server_hostname, timeout=timeout
            )
        # Every checked address in turn (a dual-stack name whose IPv6 address does not answer
        # still works over IPv4); never the name again. TLS still checks the name (SNI).
        failure: ConnectFailed | None = None
        for address in allowed:
            try:
                return await self.inner.dial(
                    address, port, tls=tls, server_hostname=server_hostname, timeout=timeout
                )
            except ConnectFailed as exc:
                failure = exc
        assert failure is not None
        raise failure
