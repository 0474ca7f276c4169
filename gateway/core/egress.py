"""Where the gateway may connect: SSRF rules for upstream URLs (pure; no I/O here).

1. When an operator sets ``--base-url`` (``check_base_url``): ``https://`` only, unless the
   host is a loopback address or is listed in ``allowed_upstream_hosts``.
2. At connect time (``GuardedBackend``), after DNS resolution: private, link-local (cloud
   metadata: 169.254.169.254), CGNAT, unspecified and multicast addresses are refused unless
   the host name is explicitly allowed, so a name that resolves to an internal address later
   (DNS rebinding) is refused too. The checked address is the one connected to.
Redirects are never followed (the httpx client is built with ``follow_redirects=False``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from gateway.core.errors import InvalidRequest

_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def is_loopback(host: str) -> bool:
    address = _ip(host)
    return host.lower() in _LOOPBACK_NAMES or (address is not None and address.is_loopback)


def is_forbidden_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if address.is_loopback:
        return False  # a local model server (Ollama, vLLM) is a legitimate upstream
    return (
        address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_unspecified
        or address.is_reserved
        or address in ipaddress.ip_network("100.64.0.0/10")
    )


def check_base_url(scheme: str, host: str, allowed_hosts: Iterable[str]) -> None:
    """Refuse an upstream URL the gateway should not talk to (raises InvalidRequest)."""
    host = host.lower()
    if host in {h.lower() for h in allowed_hosts} or is_loopback(host):
        return
    if scheme != "https":
        raise InvalidRequest(
            f"The base URL must use https:// (http is allowed only for loopback addresses or "
            f"hosts listed in allowed_upstream_hosts; {host!r} is neither)."
        )
    address = _ip(host)
    if address is not None and is_forbidden_address(address):
        raise InvalidRequest(
            f"The base URL points at a private or link-local address ({host}); list it in "
            "allowed_upstream_hosts if that is intended."
        )
