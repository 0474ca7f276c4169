"""Which upstream origins go through an HTTP forward proxy, and with which credentials.

The settings give the proxy URLs (``upstream_proxy_url``, which wins, else ``HTTPS_PROXY`` for
https:// upstreams and ``HTTP_PROXY`` for http:// ones) and ``NO_PROXY``, read as curl and
httpx read it: a comma-separated list of host names (each also matching its subdomains; a
leading ``.`` or ``*.`` is the same), IP addresses, CIDR networks, optional ``:port``, or ``*``
for every host. Loopback addresses are not exempt by themselves: list them in NO_PROXY.

A proxy URL is ``http://[user:password@]host[:port]`` (no scheme means http; port 3128 when
none is given, and https:// proxies are refused: TLS to the proxy itself is not supported).
Its credentials become a ``Proxy-Authorization: Basic`` header. A ``Proxy`` never shows them:
its repr and every message name the proxy as ``host:port`` only.
"""

from __future__ import annotations

import base64
import ipaddress
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

DEFAULT_PROXY_PORT = 3128


class ProxyConfigError(ValueError):
    """A proxy URL or NO_PROXY entry that cannot be used (the message holds no credentials)."""


@dataclass(frozen=True, slots=True)
class Proxy:
    host: str
    port: int
    #: ``Basic ...`` when the URL carried credentials; never logged (not in the repr).
    authorization: str | None = field(default=None, repr=False)

    @property
    def shown(self) -> str:
        return f"{self.host}:{self.port}"

    def headers(self) -> str:
        """The header lines (each ending in CRLF) a request to the proxy carries."""
        if self.authorization is None:
            return ""
        return f"Proxy-Authorization: {self.authorization}\r\n"


def parse_proxy_url(url: str, what: str) -> Proxy:
    """``url`` as a Proxy; ``what`` names the setting in the error (never the URL itself)."""
    text = url.strip()
    if "://" not in text:
        text = f"http://{text}"
    try:
        parts = urlsplit(text)
        port = parts.port or DEFAULT_PROXY_PORT
    except ValueError:
        raise ProxyConfigError(f"{what} is not a valid proxy URL.") from None
    if parts.scheme != "http":
        raise ProxyConfigError(
            f"{what} must be an http:// proxy URL (https upstreams are tunnelled through it "
            f"with CONNECT); {parts.scheme}:// proxies are not supported."
        )
    if not parts.hostname or any(c in text for c in "\r\n\0 "):
        raise ProxyConfigError(f"{what} is not a valid proxy URL.")
    authorization = None
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
    return Proxy(parts.hostname.lower(), port, authorization)


@dataclass(frozen=True, slots=True)
class _Exemption:
    host: str | None = None
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    port: int | None = None

    def matches(
        self, host: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address | None, port: int
    ) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.network is not None:
            return address is not None and address in self.network
        assert self.host is not None
        return host == self.host or host.endswith(f".{self.host}")


def _exemption(entry: str) -> _Exemption:
    port: int | None = None
    host = entry
    if entry.startswith("["):  # [::1]:8080
        host, _, rest = entry[1:].partition("]")
        if rest.startswith(":") and rest[1:].isdigit():
            port = int(rest[1:])
    elif entry.count(":") == 1:
        name, _, tail = entry.partition(":")
        if tail.isdigit():
            host, port = name, int(tail)
    try:
        return _Exemption(network=ipaddress.ip_network(host, strict=False), port=port)
    except ValueError:
        pass
    host = host.removeprefix("*").removeprefix(".")
    if not host:
        raise ProxyConfigError(f"NO_PROXY holds an empty entry ({entry!r}).")
    return _Exemption(host=host, port=port)


class ProxyRoutes:
    """The proxy (or None) for each upstream origin; immutable once built."""

    def __init__(
        self, *, http: Proxy | None = None, https: Proxy | None = None, no_proxy: str = ""
    ) -> None:
        self._http = http
        self._https = https
        entries = [e.strip().lower() for e in no_proxy.split(",") if e.strip()]
        self._everything_exempt = "*" in entries
        self._exemptions = tuple(_exemption(e) for e in entries if e != "*")

    @classmethod
    def from_settings(
        cls,
        *,
        upstream_proxy_url: str | None,
        https_proxy: str | None,
        http_proxy: str | None,
        no_proxy: str | None,
    ) -> ProxyRoutes:
        """``upstream_proxy_url`` wins over both variables; raises ProxyConfigError."""
        if upstream_proxy_url:
            both = parse_proxy_url(upstream_proxy_url, "upstream_proxy_url")
            return cls(http=both, https=both, no_proxy=no_proxy or "")
        return cls(
            http=parse_proxy_url(http_proxy, "HTTP_PROXY") if http_proxy else None,
            https=parse_proxy_url(https_proxy, "HTTPS_PROXY") if https_proxy else None,
            no_proxy=no_proxy or "",
        )

    @property
    def active(self) -> bool:
        return self._http is not None or self._https is not None

    def proxy_for(self, *, tls: bool, host: str, port: int) -> Proxy | None:
        proxy = self._https if tls else self._http
        if proxy is None or self._everything_exempt:
            return None
        name = host.strip("[]").lower().rstrip(".")
        try:
            address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(
                name
            )
        except ValueError:
            address = None
        if any(e.matches(name, address, port) for e in self._exemptions):
            return None
        return proxy
