"""SSRF rules: check_base_url (registration) and GuardedDialer (connect time, after DNS).

No test here connects anywhere but 127.0.0.1: the resolver is monkeypatched, and the dialer
behind the guard is a recorder that refuses any non-loopback connection, so a guard
that let a private address through fails the test instead of touching the network.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from dataclasses import dataclass, field
from typing import Any

import pytest

from gateway.core import validation
from gateway.core.egress import check_base_url, is_forbidden_address, is_loopback
from gateway.core.errors import InvalidRequest, UpstreamRejected, UpstreamUnavailable
from gateway.upstream import egress
from gateway.upstream.egress import GuardedDialer
from gateway.upstream.openai import OpenAIUpstream
from gateway.upstream.types import ChatRequest
from gateway.upstream.wire import ConnectFailed, Connection, TCPDialer
from tests.gateway.upstream.raw_server import answer, ok_stream, raw_server

pytestmark = pytest.mark.anyio

FORBIDDEN = [
    "10.0.0.1",
    "10.255.255.1",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata (AWS, GCP, Azure)
    "169.254.170.2",  # ECS task metadata
    "100.64.0.1",  # CGNAT
    "100.127.255.254",
    "0.0.0.0",  # noqa: S104 (an address to refuse, not a bind)
    "224.0.0.1",
    "240.0.0.1",
    "255.255.255.255",
    "fd00::1",
    "fd00:ec2::254",  # AWS metadata over IPv6
    "fe80::1",
    "::",
    "::ffff:169.254.169.254",  # IPv4-mapped metadata
    "::ffff:10.0.0.1",
    "ff02::1",
]
PUBLIC = ["8.8.8.8", "1.1.1.1", "104.18.7.192", "2606:4700::6810:1", "2001:4860:4860::8888"]
LOOPBACK = ["127.0.0.1", "127.0.0.53", "::1"]


# --- the pure rules -------------------------------------------------------------------------


@pytest.mark.parametrize("address", FORBIDDEN)
def test_private_link_local_metadata_and_cgnat_addresses_are_forbidden(address: str) -> None:
    assert is_forbidden_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", PUBLIC + LOOPBACK)
def test_public_and_loopback_addresses_are_not_forbidden(address: str) -> None:
    assert not is_forbidden_address(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LOCALHOST", True),
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost.evil.test", False),
        ("10.0.0.1", False),
        ("0.0.0.0", False),  # noqa: S104
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


ALLOWED = ("llm.internal", "10.1.2.3", "GPU-Box.LAN")


@pytest.mark.parametrize(
    ("scheme", "host"),
    [
        ("https", "api.openai.com"),
        ("https", "8.8.8.8"),
        ("https", "2606:4700::6810:1"),
        ("http", "localhost"),
        ("http", "127.0.0.1"),
        ("http", "::1"),
        ("https", "127.0.0.1"),
        ("http", "llm.internal"),  # listed: plain http is allowed
        ("http", "LLM.Internal"),  # host names are case-insensitive
        ("https", "10.1.2.3"),  # listed: a private address is allowed
        ("http", "10.1.2.3"),
        ("http", "gpu-box.lan"),
        # A name is checked after DNS, at connect time (GuardedBackend), not here.
        ("https", "metadata.google.internal"),
    ],
)
def test_check_base_url_accepts(scheme: str, host: str) -> None:
    check_base_url(scheme, host, ALLOWED)


@pytest.mark.parametrize(
    ("scheme", "host", "problem"),
    [
        ("http", "api.openai.com", "https"),
        ("http", "example.com", "https"),
        ("http", "8.8.8.8", "https"),
        ("http", "10.0.0.1", "https"),
        ("http", "localhost.evil.test", "https"),
        ("http", "0.0.0.0", "https"),  # noqa: S104
        ("ftp", "api.openai.com", "https"),
        *(("https", address, "private") for address in FORBIDDEN),
        ("https", "10.1.2.4", "private"),  # not the listed 10.1.2.3
    ],
)
def test_check_base_url_refuses(scheme: str, host: str, problem: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        check_base_url(scheme, host, ALLOWED)
    assert problem in raised.value.message
    assert raised.value.http_status == 400


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data",
        "https://169.254.169.254/v1",
        "https://[fd00:ec2::254]/v1",
        "https://[::ffff:a9fe:a9fe]/v1",
        "https://10.255.255.1:8443/v1",
        "http://internal.corp/v1",
    ],
)
def test_validation_refuses_ssrf_base_urls(url: str) -> None:
    with pytest.raises(InvalidRequest):
        validation.base_url(url)


def test_validation_never_echoes_credentials_in_a_refused_url() -> None:
    with pytest.raises(InvalidRequest) as raised:
        validation.base_url("http://user:sk-secret-in-url@10.0.0.1/v1")
    assert "sk-secret-in-url" not in raised.value.message


def test_validation_keeps_allowed_upstreams() -> None:
    assert validation.base_url("http://127.0.0.1:9100/v1/") == "http://127.0.0.1:9100/v1"
    assert validation.base_url("https://api.openai.com/v1") == "https://api.openai.com/v1"
    assert (
        validation.base_url("http://llm.internal:8000/v1", allowed_hosts=["llm.internal"])
        == "http://llm.internal:8000/v1"
    )


# --- GuardedDialer --------------------------------------------------------------------------


@dataclass
class Recorder:
    """The network behind the guard: records every dial, connects to nothing but loopback."""

    refuse: set[str] = field(default_factory=set)
    calls: list[tuple[str, int]] = field(default_factory=list)
    hostnames: list[str | None] = field(default_factory=list)

    async def dial(
        self,
        host: str,
        port: int,
        *,
        tls: ssl.SSLContext | None,
        server_hostname: str | None,
        timeout: float,
    ) -> Connection:
        self.calls.append((host, port))
        self.hostnames.append(server_hostname)
        if host in self.refuse:
            raise ConnectFailed(f"connection to {host} refused")
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is None or not literal.is_loopback:
            return Pretend(asyncio.get_running_loop(), host)  # recorded, never dialled
        return await TCPDialer().dial(
            host, port, tls=tls, server_hostname=server_hostname, timeout=timeout
        )


class Pretend(Connection):
    """A stand-in for a connection the recorder pretended to open."""

    def __init__(self, loop: asyncio.AbstractEventLoop, host: str) -> None:
        super().__init__(loop)
        self.host = host

    def send(self, data: bytes) -> None:
        raise AssertionError("no I/O on a pretend connection")


def _dial(guard: GuardedDialer, host: str, port: int) -> Any:
    return guard.dial(host, port, tls=None, server_hostname=None, timeout=1)


Resolved = dict[str, list[str]]


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> Resolved:
    """A resolver we control: name -> addresses; any other name fails to resolve."""
    table: Resolved = {}
    looked_up: list[str] = []

    async def getaddrinfo(host: str, port: int, **_: Any) -> list[tuple[Any, ...]]:
        looked_up.append(host)
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        infos = []
        for address in table[host]:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sockaddr = (address, port, 0, 0) if family == socket.AF_INET6 else (address, port)
            infos.append((family, socket.SOCK_STREAM, 6, "", sockaddr))
        return infos

    async def resolve(host: str, port: int) -> list[str]:
        return [str(info[4][0]) for info in await getaddrinfo(host, port)]

    monkeypatch.setattr(egress, "resolve", resolve)
    table["__looked_up__"] = looked_up  # the names asked for, in order
    return table


@pytest.mark.parametrize("address", FORBIDDEN)
async def test_a_name_resolving_to_a_forbidden_address_is_refused_before_connecting(
    dns: Resolved, address: str
) -> None:
    dns["rebind.attacker.test"] = [address]
    inner = Recorder()
    guard = GuardedDialer(inner, allowed_hosts=())
    with pytest.raises(UpstreamUnavailable) as raised:
        await _dial(guard, "rebind.attacker.test", 443)
    assert inner.calls == [], "the guard let a connection through"
    assert "rebind.attacker.test" in raised.value.message


@pytest.mark.parametrize("address", ["10.255.255.1", "169.254.169.254", "100.64.0.1", "fe80::1"])
async def test_an_ip_literal_is_refused_before_connecting(address: str) -> None:
    # The real resolver: a literal resolves to itself without any network traffic.
    inner = Recorder()
    with pytest.raises(UpstreamUnavailable):
        await _dial(GuardedDialer(inner, allowed_hosts=()), address, 443)
    assert inner.calls == []


async def test_it_connects_to_the_checked_address_not_the_name(dns: Resolved) -> None:
    dns["api.example.test"] = ["8.8.8.8"]
    inner = Recorder()
    stream = await _dial(GuardedDialer(inner, allowed_hosts=()), "api.example.test", 443)
    assert isinstance(stream, Pretend)
    # The address that was checked is the one dialled: no second lookup that could rebind.
    assert inner.calls == [("8.8.8.8", 443)]
    assert dns["__looked_up__"] == ["api.example.test"]


async def test_forbidden_addresses_among_the_answers_are_skipped(dns: Resolved) -> None:
    dns["mixed.example.test"] = ["169.254.169.254", "10.0.0.7", "1.1.1.1", "192.168.0.1"]
    inner = Recorder()
    await _dial(GuardedDialer(inner, allowed_hosts=()), "mixed.example.test", 443)
    assert inner.calls == [("1.1.1.1", 443)]


async def test_the_next_checked_address_is_tried_when_the_first_refuses(dns: Resolved) -> None:
    """A dual-stack name whose first (IPv6) address does not answer still works over IPv4.

    A plain connect tries every address; the guard must not do worse by dialling only the
    first one (a host without IPv6 routing would lose every such upstream).
    """
    dns["dual.example.test"] = ["2606:4700::6810:1", "104.18.7.192"]
    inner = Recorder(refuse={"2606:4700::6810:1"})
    stream = await _dial(GuardedDialer(inner, allowed_hosts=()), "dual.example.test", 443)
    assert isinstance(stream, Pretend) and stream.host == "104.18.7.192"
    assert inner.calls == [("2606:4700::6810:1", 443), ("104.18.7.192", 443)]


async def test_when_every_checked_address_refuses_the_error_is_a_connect_error(
    dns: Resolved,
) -> None:
    dns["down.example.test"] = ["8.8.8.8", "8.8.4.4"]
    inner = Recorder(refuse={"8.8.8.8", "8.8.4.4"})
    with pytest.raises(ConnectFailed):
        await _dial(GuardedDialer(inner, allowed_hosts=()), "down.example.test", 443)
    assert [host for host, _ in inner.calls] == ["8.8.8.8", "8.8.4.4"]


async def test_an_allowed_host_is_connected_by_name_without_the_address_check(
    dns: Resolved,
) -> None:
    dns["llm.internal"] = ["10.1.2.3"]
    inner = Recorder()
    await _dial(GuardedDialer(inner, allowed_hosts=["LLM.internal"]), "llm.internal", 80)
    assert inner.calls == [("llm.internal", 80)]
    assert dns["__looked_up__"] == []


async def test_loopback_names_are_allowed(dns: Resolved) -> None:
    dns["local.test"] = ["127.0.0.1"]
    inner = Recorder()
    async with raw_server(ok_stream()) as server:
        connection = await _dial(GuardedDialer(inner, allowed_hosts=()), "local.test", server.port)
        connection.close()
    assert inner.calls == [("127.0.0.1", server.port)]


async def test_a_name_that_does_not_resolve_is_a_connect_error(dns: Resolved) -> None:
    inner = Recorder()
    with pytest.raises(ConnectFailed):
        await _dial(GuardedDialer(inner, allowed_hosts=()), "nowhere.test", 443)
    assert inner.calls == []


# --- wired into the real upstream client ----------------------------------------------------


def _guarded_upstream(allowed: tuple[str, ...] = ()) -> tuple[OpenAIUpstream, Recorder]:
    upstream = OpenAIUpstream(connect_timeout=2, first_token_timeout=2, allowed_hosts=allowed)
    guard = upstream.pool.dialer
    assert isinstance(guard, GuardedDialer), "the SSRF guard is not installed"
    recorder = Recorder()
    guard.inner = recorder
    return upstream, recorder


def _chat(base_url: str) -> ChatRequest:
    return ChatRequest(
        base_url=base_url,
        api_key="sk-test",
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hi"}],
    )


@pytest.mark.parametrize(
    "base_url",
    ["https://10.255.255.1/v1", "http://169.254.169.254/v1", "https://[fd00:ec2::254]/v1"],
)
async def test_the_upstream_client_refuses_forbidden_addresses_before_connecting(
    base_url: str,
) -> None:
    """An app stored before the registration rule existed still cannot reach these addresses."""
    upstream, recorder = _guarded_upstream()
    try:
        with pytest.raises(UpstreamUnavailable):
            await upstream.open_stream(_chat(base_url))
        with pytest.raises(UpstreamUnavailable):
            await upstream.complete(_chat(base_url))
    finally:
        await upstream.aclose()
    assert recorder.calls == []


async def test_the_upstream_client_does_not_follow_redirects() -> None:
    """A 307 to the metadata address (or anywhere) is an error, not a second request."""
    async with raw_server(ok_stream()) as target:
        location = f"{target.base_url}/chat/completions"
        redirect = answer(
            307,
            {"error": {"message": "moved"}},
            reason="Temporary Redirect",
            headers=[("location", location)],
        )
        async with raw_server(redirect) as redirector:
            upstream, recorder = _guarded_upstream()
            try:
                with pytest.raises(UpstreamRejected) as raised:
                    await upstream.open_stream(_chat(redirector.base_url))
                with pytest.raises(UpstreamRejected):
                    await upstream.complete(_chat(redirector.base_url))
            finally:
                await upstream.aclose()
    assert raised.value.upstream_status == 307
    assert len(redirector.requests) == 2
    assert target.requests == [], "the redirect was followed"
    assert {host for host, _ in recorder.calls} == {"127.0.0.1"}
