"""The connect-time half of the SSRF rules (see gateway.core.egress): checked after DNS."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

import anyio
import httpcore

from gateway.core.egress import is_forbidden_address
from gateway.core.errors import UpstreamUnavailable


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves, checks and connects to the checked address (no second lookup to rebind)."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend, allowed_hosts: Iterable[str]) -> None:
        self._inner = inner
        self._allowed = frozenset(h.lower() for h in allowed_hosts)

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if host.lower() in self._allowed:
            return await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        try:
            infos = await anyio.getaddrinfo(host, port, type=0)
        except OSError:
            raise httpcore.ConnectError(f"cannot resolve {host}") from None
        addresses = [str(info[4][0]) for info in infos]
        allowed = [a for a in addresses if not is_forbidden_address(ipaddress.ip_address(a))]
        if not allowed:
            raise UpstreamUnavailable(
                f"The upstream {host} resolves to a private or link-local address; refused "
                "(list it in allowed_upstream_hosts if that is intended)."
            )
        # Every checked address in turn, as httpcore's own backend would (a dual-stack name
        # whose IPv6 address does not answer still works over IPv4); never the name again.
        failure: httpcore.ConnectError | httpcore.ConnectTimeout | None = None
        for address in dict.fromkeys(allowed):
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)
