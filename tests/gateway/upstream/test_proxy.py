"""Proxy URLs and NO_PROXY (gateway/upstream/proxy.py), and how the settings read them."""

from __future__ import annotations

import base64

import pytest

from gateway.settings import Settings
from gateway.upstream.proxy import ProxyConfigError, ProxyRoutes, parse_proxy_url


def test_a_proxy_url_with_credentials_becomes_a_basic_header_never_shown() -> None:
    proxy = parse_proxy_url("http://al%40ce:p%3Ass@Proxy.corp:8080", "HTTPS_PROXY")
    assert (proxy.host, proxy.port, proxy.shown) == ("proxy.corp", 8080, "proxy.corp:8080")
    assert proxy.authorization == "Basic " + base64.b64encode(b"al@ce:p:ss").decode()
    assert "p:ss" not in repr(proxy)
    assert "Basic" not in repr(proxy)
    assert proxy.headers() == f"Proxy-Authorization: {proxy.authorization}\r\n"


def test_a_proxy_without_scheme_or_port_is_http_on_3128() -> None:
    proxy = parse_proxy_url("squid.internal", "HTTP_PROXY")
    assert (proxy.host, proxy.port, proxy.authorization, proxy.headers()) == (
        "squid.internal",
        3128,
        None,
        "",
    )


@pytest.mark.parametrize(
    "url",
    [
        "https://user:hunter2@proxy:443",
        "socks5://user:hunter2@proxy:1080",
        "http://user:hunter2@:8080",
        "http://user:hunter2@proxy:99999",
    ],
)
def test_unusable_proxy_urls_are_refused_without_echoing_them(url: str) -> None:
    with pytest.raises(ProxyConfigError) as caught:
        parse_proxy_url(url, "upstream_proxy_url")
    assert "upstream_proxy_url" in str(caught.value)
    assert "hunter2" not in str(caught.value)


def _routes(no_proxy: str) -> ProxyRoutes:
    return ProxyRoutes.from_settings(
        upstream_proxy_url=None,
        https_proxy="http://secure-proxy:3128",
        http_proxy="http://plain-proxy:3128",
        no_proxy=no_proxy,
    )


@pytest.mark.parametrize(
    ("no_proxy", "host", "port", "direct"),
    [
        ("", "api.openai.com", 443, False),
        ("*", "api.openai.com", 443, True),
        ("openai.com", "api.openai.com", 443, True),
        (".openai.com", "api.openai.com", 443, True),
        ("*.openai.com", "api.openai.com", 443, True),
        ("openai.com", "notopenai.com", 443, False),
        ("API.OpenAI.com", "api.openai.com", 443, True),
        ("localhost, 127.0.0.1", "127.0.0.1", 9100, True),
        ("10.0.0.0/8", "10.1.2.3", 443, True),
        ("10.0.0.0/8", "11.1.2.3", 443, False),
        ("::1", "::1", 443, True),
        ("[::1]:8443", "::1", 443, False),
        ("[::1]:8443", "::1", 8443, True),
        ("models.local:8000", "models.local", 8000, True),
        ("models.local:8000", "models.local", 9000, False),
    ],
)
def test_no_proxy_entries(no_proxy: str, host: str, port: int, direct: bool) -> None:
    proxy = _routes(no_proxy).proxy_for(tls=True, host=host, port=port)
    assert (proxy is None) is direct


def test_each_scheme_has_its_proxy_and_upstream_proxy_url_wins_for_both() -> None:
    routes = _routes("")
    secure = routes.proxy_for(tls=True, host="a.example", port=443)
    plain = routes.proxy_for(tls=False, host="a.example", port=80)
    assert secure is not None and secure.host == "secure-proxy"
    assert plain is not None and plain.host == "plain-proxy"
    winner = ProxyRoutes.from_settings(
        upstream_proxy_url="http://egress:8888",
        https_proxy="http://secure-proxy:3128",
        http_proxy=None,
        no_proxy="internal.example",
    )
    for tls in (True, False):
        chosen = winner.proxy_for(tls=tls, host="a.example", port=443)
        assert chosen is not None and chosen.shown == "egress:8888"
    assert winner.proxy_for(tls=True, host="internal.example", port=443) is None
    assert not ProxyRoutes().active


def test_settings_read_the_standard_variables_unprefixed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://u:secret-one@proxy.corp:3128")
    monkeypatch.setenv("no_proxy", "localhost,.internal")
    monkeypatch.setenv("ORCHESTRA_UPSTREAM_PROXY_URL", "http://egress:8888")
    monkeypatch.setenv("ORCHESTRA_UPSTREAM_CA_BUNDLE", "/etc/ssl/corp.pem")
    settings = Settings()
    assert settings.https_proxy is not None
    assert settings.https_proxy.get_secret_value() == "http://u:secret-one@proxy.corp:3128"
    assert settings.no_proxy == "localhost,.internal"
    assert settings.upstream_proxy_url is not None
    assert settings.upstream_proxy_url.get_secret_value() == "http://egress:8888"
    assert str(settings.upstream_ca_bundle) == "/etc/ssl/corp.pem"
    assert "secret-one" not in repr(settings)
