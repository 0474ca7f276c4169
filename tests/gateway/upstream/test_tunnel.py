"""Upstream calls through a real forward proxy (tinyproxy) to the OpenAI fake over real TLS.

The fake's certificate comes from a test CA (``upstream_ca_bundle``); the proxy's own log says
which requests went through it. Nothing here leaves 127.0.0.1.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.core.errors import UpstreamError, UpstreamUnavailable
from gateway.upstream import egress
from gateway.upstream.fetch import GuardedFetcher
from gateway.upstream.openai import OpenAIUpstream
from gateway.upstream.proxy import ProxyRoutes, parse_proxy_url
from gateway.upstream.types import ChatRequest
from tests.gateway.upstream.raw_server import ok_stream, raw_server
from tests.support.forward_proxy import ForwardProxy
from tests.support.oidc_provider import OidcProvider
from tests.support.tls_fake import TLSFake

pytestmark = pytest.mark.anyio

PROXY_PASSWORD = "pr0xy-s3cret"


@pytest.fixture(scope="module")
def tls_fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSFake]:
    with TLSFake.running(tmp_path_factory.mktemp("tls-fake")) as fake:
        yield fake


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[ForwardProxy]:
    with ForwardProxy.running(tmp_path, user="orchestra", password=PROXY_PASSWORD) as running:
        yield running


def _upstream(routes: ProxyRoutes, ca: Path | None) -> OpenAIUpstream:
    return OpenAIUpstream(
        connect_timeout=5,
        first_token_timeout=10,
        proxies=routes,
        ca_bundle=None if ca is None else str(ca),
    )


def _through(proxy: ForwardProxy, *, no_proxy: str = "") -> ProxyRoutes:
    routes = ProxyRoutes.from_settings(
        upstream_proxy_url=proxy.url, https_proxy=None, http_proxy=None, no_proxy=no_proxy
    )
    assert routes.active
    return routes


def _chat(base_url: str, marker: str) -> ChatRequest:
    return ChatRequest(
        base_url=base_url,
        api_key="sk-test-tunnel",
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": marker}],
    )


def _received(fake: TLSFake, marker: str) -> int:
    return sum(marker in json.dumps(r["body"]) for r in fake.requests())


async def _stream_text(upstream: OpenAIUpstream, request: ChatRequest) -> str:
    stream = await upstream.open_stream(request)
    text = ""
    try:
        while (chunk := await stream.next_chunk(5)) is not None:
            text += chunk.text
    finally:
        await stream.aclose()
    return text


async def test_https_goes_through_one_connect_tunnel_with_tls_to_the_upstream(
    tls_fake: TLSFake, proxy: ForwardProxy
) -> None:
    upstream = _upstream(_through(proxy), tls_fake.ca_path)
    try:
        streamed = await _stream_text(upstream, _chat(tls_fake.base_url(), "tunnel-stream"))
        completed = await upstream.complete(_chat(tls_fake.base_url(), "tunnel-json"))
    finally:
        await upstream.aclose()
    assert streamed and completed.text
    # Both answers came through the tunnel, and the second reused the first's connection.
    assert proxy.tunnels() == [f"localhost:{tls_fake.port}"]
    assert _received(tls_fake, "tunnel-stream") == 1
    assert _received(tls_fake, "tunnel-json") == 1


async def test_tls_inside_the_tunnel_is_verified(tls_fake: TLSFake, proxy: ForwardProxy) -> None:
    """Without the test CA (certifi only), the fake's certificate is refused: TLS is real."""
    upstream = _upstream(_through(proxy), None)
    try:
        with pytest.raises(UpstreamUnavailable):
            await upstream.complete(_chat(tls_fake.base_url(), "untrusted"))
    finally:
        await upstream.aclose()
    assert proxy.tunnels() == [f"localhost:{tls_fake.port}"]
    assert _received(tls_fake, "untrusted") == 0


async def test_no_proxy_hosts_are_reached_directly(tls_fake: TLSFake, proxy: ForwardProxy) -> None:
    upstream = _upstream(_through(proxy, no_proxy="127.0.0.1"), tls_fake.ca_path)
    try:
        direct = await upstream.complete(_chat(tls_fake.base_url("127.0.0.1"), "direct"))
        proxied = await upstream.complete(_chat(tls_fake.base_url("localhost"), "proxied"))
    finally:
        await upstream.aclose()
    assert direct.text and proxied.text
    assert proxy.tunnels() == [f"localhost:{tls_fake.port}"]
    assert (_received(tls_fake, "direct"), _received(tls_fake, "proxied")) == (1, 1)


async def test_plain_http_is_forwarded_in_absolute_form(proxy: ForwardProxy) -> None:
    routes = ProxyRoutes.from_settings(
        upstream_proxy_url=None, https_proxy=None, http_proxy=proxy.url, no_proxy=None
    )
    upstream = _upstream(routes, None)
    async with raw_server(ok_stream(("through ", "proxy"))) as server:
        try:
            text = await _stream_text(upstream, _chat(server.base_url, "plain"))
        finally:
            await upstream.aclose()
    assert text == "through proxy"
    assert proxy.requests() == [("POST", f"{server.base_url}/chat/completions")]
    assert [r.path for r in server.requests] == ["/v1/chat/completions"]


async def test_a_refused_tunnel_is_a_502_upstream_error_naming_the_proxy(
    tls_fake: TLSFake, tmp_path: Path
) -> None:
    # tinyproxy tunnels only to the ports listed (443 here): the fake's port is refused.
    with ForwardProxy.running(tmp_path / "strict", connect_ports=(443,)) as strict:
        upstream = _upstream(_through(strict), tls_fake.ca_path)
        try:
            with pytest.raises(UpstreamError) as caught:
                await upstream.complete(_chat(tls_fake.base_url(), "refused"))
        finally:
            await upstream.aclose()
    error = caught.value
    assert (type(error), error.code, error.http_status) == (UpstreamError, "upstream_error", 502)
    assert str(error) == (
        f"The egress proxy 127.0.0.1:{strict.port} refused the tunnel to "
        f"localhost:{tls_fake.port} (HTTP 403: forbidden by the proxy's rules)."
    )
    assert strict.tunnels() == [f"localhost:{tls_fake.port}"]


async def test_wrong_proxy_credentials_say_so_without_showing_them(
    tls_fake: TLSFake, proxy: ForwardProxy
) -> None:
    url = f"http://orchestra:nope-nope@127.0.0.1:{proxy.port}"
    wrong = ProxyRoutes(https=parse_proxy_url(url, "x"))
    upstream = _upstream(wrong, tls_fake.ca_path)
    try:
        with pytest.raises(UpstreamError) as caught:
            await upstream.complete(_chat(tls_fake.base_url(), "wrong-credentials"))
    finally:
        await upstream.aclose()
    # tinyproxy answers 401 rather than 407 to a CONNECT: both read as the credentials.
    assert re.search(r"\(HTTP 40[17]: proxy authentication required", str(caught.value))
    assert "nope-nope" not in str(caught.value)
    assert _received(tls_fake, "wrong-credentials") == 0


async def test_ssrf_rules_apply_to_the_upstream_host_before_the_proxy_is_asked(
    proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def metadata_address(host: str, port: int) -> list[str]:
        return ["169.254.169.254"]

    monkeypatch.setattr(egress, "resolve", metadata_address)
    upstream = _upstream(_through(proxy), None)
    try:
        with pytest.raises(UpstreamUnavailable, match="private or link-local"):
            await upstream.complete(_chat("https://metadata.example/v1", "ssrf"))
    finally:
        await upstream.aclose()
    assert proxy.requests() == []


async def test_openid_documents_are_fetched_through_the_same_proxy(proxy: ForwardProxy) -> None:
    routes = ProxyRoutes.from_settings(
        upstream_proxy_url=proxy.url, https_proxy=None, http_proxy=None, no_proxy=None
    )
    fetcher = GuardedFetcher(connect_timeout=5, proxies=routes)
    with OidcProvider.running() as provider:
        url = f"{provider.issuer}/.well-known/openid-configuration"
        try:
            document = json.loads(await fetcher.get(url, limit=65_536, timeout=10))
        finally:
            await fetcher.aclose()
        assert document["issuer"] == provider.issuer
        assert provider.discovery_fetches == 1
    assert proxy.requests() == [("GET", url)]
