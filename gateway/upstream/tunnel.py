"""A dialer that reaches upstreams through an HTTP forward proxy (see proxy.py for the rules).

For an https:// origin it opens a ``CONNECT host:port`` tunnel through the proxy, then starts
TLS inside it with the pool's context and the upstream's name (SNI and certificate checked end
to end: the proxy sees only ciphertext). For an http:// origin it hands back the connection to
the proxy marked for absolute-form requests (``Connection.forward``). Origins the routes exempt
(NO_PROXY, or no proxy for the scheme) are dialled directly, through the SSRF guard.

The SSRF rules still apply to the upstream host: its name is resolved and checked here (refused
when every address is private, link-local or metadata, unless allowed by name) before the
proxy is asked, and the tunnel is asked by name, so proxies that filter by domain keep working
and TLS checks the name. The proxy resolves the name again; what it then reaches is its rules'
business. The proxy's own address is the operator's choice and is not checked.
"""

from __future__ import annotations

import asyncio
import ssl

from gateway.upstream.egress import GuardedDialer
from gateway.upstream.proxy import Proxy, ProxyRoutes
from gateway.upstream.wire import (
    ConnectFailed,
    Connection,
    ConnectTimedOut,
    Dialer,
    Pool,
    ReadTimedOut,
    TCPDialer,
    WireError,
)


class TunnelRefused(WireError):
    """The proxy answered the CONNECT with something other than 200 (nothing was sent)."""


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _refusal(proxy: Proxy, host: str, port: int, status: int) -> TunnelRefused:
    # 401: what tinyproxy (and a few others) answer a CONNECT with wrong credentials.
    auth = "proxy authentication required: check the credentials in the proxy URL"
    why = {407: auth, 401: auth, 403: "forbidden by the proxy's rules"}.get(status, "")
    detail = f"HTTP {status}: {why}" if why else f"HTTP {status}"
    return TunnelRefused(
        f"The egress proxy {proxy.shown} refused the tunnel to {_authority(host, port)} ({detail})."
    )


class ProxyDialer:
    """Routes each new connection directly (``guard``) or through its proxy (``to_proxy``)."""

    def __init__(self, routes: ProxyRoutes, guard: GuardedDialer, to_proxy: Dialer) -> None:
        self._routes = routes
        self._guard = guard
        self._to_proxy = to_proxy

    async def dial(
        self,
        host: str,
        port: int,
        *,
        tls: ssl.SSLContext | None,
        server_hostname: str | None,
        timeout: float,
    ) -> Connection:
        proxy = self._routes.proxy_for(tls=tls is not None, host=host, port=port)
        if proxy is None:
            return await self._guard.dial(
                host, port, tls=tls, server_hostname=server_hostname, timeout=timeout
            )
        await self._guard.check(host, port)
        connection = await self._to_proxy.dial(
            proxy.host, proxy.port, tls=None, server_hostname=None, timeout=timeout
        )
        if tls is None:
            connection.forward = (f"http://{_authority(host, port)}", proxy.headers())
            return connection
        try:
            return await self._tunnel(
                connection, proxy, host, port, tls, server_hostname or host, timeout
            )
        except BaseException:
            connection.close()
            raise

    async def _tunnel(
        self,
        connection: Connection,
        proxy: Proxy,
        host: str,
        port: int,
        tls: ssl.SSLContext,
        server_hostname: str,
        timeout: float,
    ) -> Connection:
        loop = asyncio.get_running_loop()
        authority = _authority(host, port)
        connection.send(
            f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n{proxy.headers()}\r\n".encode(
                "latin-1"
            )
        )
        try:
            await connection.wait_headers(timeout)
        except ReadTimedOut:
            raise ConnectTimedOut(
                f"The egress proxy {proxy.shown} did not answer the CONNECT in time."
            ) from None
        except WireError as exc:
            raise ConnectFailed(
                f"The egress proxy {proxy.shown} broke the connection ({type(exc).__name__})."
            ) from None
        if connection.status != 200:
            raise _refusal(proxy, host, port, connection.status)
        inner = Connection(loop)
        try:
            transport = await loop.start_tls(
                connection.detach(),
                inner,
                tls,
                server_hostname=server_hostname,
                ssl_handshake_timeout=timeout,
            )
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            raise ConnectFailed(
                f"TLS with {authority} through the proxy failed ({type(exc).__name__})."
            ) from exc
        assert transport is not None
        inner.connection_made(transport)
        return inner


def egress_pool(
    *,
    allowed_hosts: tuple[str, ...],
    connect_timeout: float,
    proxies: ProxyRoutes | None = None,
    ca_bundle: str | None = None,
) -> Pool:
    """A pool whose every new connection goes through the SSRF guard, and the proxy if any."""
    guard = GuardedDialer(TCPDialer(), allowed_hosts)
    dialer: Dialer = guard
    if proxies is not None and proxies.active:
        dialer = ProxyDialer(proxies, guard, TCPDialer())
    return Pool(dialer, connect_timeout=connect_timeout, ca_bundle=ca_bundle)
