"""GET a small document from a URL that came from outside, through the SSRF guard.

Used for OpenID Connect discovery documents and key sets: the issuer is typed by an operator,
but the ``jwks_uri`` is whatever the provider's document says, so both go through the same
rules as an upstream base URL (gateway.core.egress: ``https://`` unless loopback or listed in
``allowed_upstream_hosts``; private, link-local and metadata addresses refused after DNS by
``GuardedDialer``). Redirects are not followed, the answer must be a 200 without a content
encoding, its body is capped (``limit``) and the whole exchange has one deadline (``timeout``).
Every failure is an ``UpstreamUnavailable`` whose message names the URL without its query.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from urllib.parse import urlsplit

from gateway.core.egress import check_base_url
from gateway.core.errors import InvalidRequest, UpstreamUnavailable
from gateway.upstream.proxy import ProxyRoutes
from gateway.upstream.tunnel import egress_pool
from gateway.upstream.wire import WireError


def _shown(url: str) -> str:
    """The URL as it may appear in an error: no credentials, query or fragment."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "the URL"
    return f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}"[:200]


class GuardedFetcher:
    """One small guarded pool for the gateway's few outbound GETs (not the upstream's pool)."""

    def __init__(
        self,
        *,
        allowed_hosts: Iterable[str] = (),
        connect_timeout: float = 5.0,
        proxies: ProxyRoutes | None = None,
        ca_bundle: str | None = None,
    ) -> None:
        self._allowed = tuple(h.lower() for h in allowed_hosts)
        # The same egress as the upstream calls: SSRF guard, proxy routes, CA bundle.
        self._pool = egress_pool(
            allowed_hosts=self._allowed,
            connect_timeout=connect_timeout,
            proxies=proxies,
            ca_bundle=ca_bundle,
        )

    def _check(self, url: str) -> None:
        try:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise InvalidRequest("not an http(s) URL")
            if parts.username or parts.password:
                raise InvalidRequest("credentials in the URL")
            check_base_url(parts.scheme, parts.hostname, self._allowed)
        except (InvalidRequest, ValueError) as exc:
            raise UpstreamUnavailable(f"Refused to fetch {_shown(url)}: {exc}") from None

    async def get(self, url: str, *, limit: int, timeout: float) -> bytes:
        """The body of a 200 answer to GET ``url`` (at most ``limit`` bytes), or raise."""
        self._check(url)
        shown = _shown(url)
        try:
            async with asyncio.timeout(timeout):
                response = await self._pool.get(
                    url, (("Accept", "application/json"),), timeout=timeout
                )
                try:
                    if response.status != 200:
                        raise UpstreamUnavailable(f"{shown} answered HTTP {response.status}.")
                    encoding = (response.header(b"content-encoding") or "identity").strip()
                    if encoding.lower() != "identity":
                        raise UpstreamUnavailable(
                            f"{shown} sent a compressed body ({encoding[:40]})."
                        )
                    declared = response.header(b"content-length")
                    if (
                        declared is not None
                        and declared.strip().isdigit()
                        and int(declared) > limit
                    ):
                        raise UpstreamUnavailable(f"{shown} sent more than {limit} bytes.")
                    body = bytearray()
                    while chunk := await response.read(timeout):
                        body += chunk
                        if len(body) > limit:
                            raise UpstreamUnavailable(f"{shown} sent more than {limit} bytes.")
                    return bytes(body)
                finally:
                    response.close()
        except TimeoutError:
            raise UpstreamUnavailable(f"{shown} did not answer within {timeout:g} s.") from None
        except WireError as exc:
            raise UpstreamUnavailable(
                f"{shown} cannot be reached ({type(exc).__name__})."
            ) from None

    async def aclose(self) -> None:
        await self._pool.aclose()
