"""The gateway process behind a real forward proxy (tinyproxy), the fake over real TLS.

One gateway, started with the standard variables as an operator's environment has them:
``HTTPS_PROXY`` names a proxy that does not exist and ``ORCHESTRA_UPSTREAM_PROXY_URL`` (which
wins) the real one, with credentials; ``NO_PROXY`` exempts 127.0.0.1. The proxy tunnels only
to the fake's port, so an app on another port sees the proxy refuse its tunnel.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest

from tests.gateway.http.conftest import (
    MODEL,
    TLS,
    Apps,
    Gateway,
    child_env,
    free_port,
    gateway_settings,
    run_cli,
    spawn,
)
from tests.support.forward_proxy import ForwardProxy
from tests.support.tls_fake import TLSFake

pytestmark = pytest.mark.anyio

PROXY_PASSWORD = "egress-" + secrets.token_hex(8)


@dataclass
class Egress:
    gateway: Gateway
    proxy: ForwardProxy
    fake: TLSFake


@pytest.fixture(scope="module")
def egress(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Egress]:
    root = tmp_path_factory.mktemp("egress")
    home, logs = root / "home", root / "logs"
    with (
        TLSFake.running(root / "fake") as fake,
        ForwardProxy.running(
            root / "proxy", connect_ports=(fake.port,), user="gw", password=PROXY_PASSWORD
        ) as proxy,
    ):
        run_cli(["init"], child_env({"home": home}))
        settings = gateway_settings(
            home,
            upstream_proxy_url=proxy.url,
            upstream_ca_bundle=fake.ca_path,
            log_level="DEBUG",  # every upstream call logged: the password must be in none
        )
        env = child_env(settings)
        env.update(HTTPS_PROXY="http://never-used.invalid:3128", NO_PROXY="127.0.0.1")
        server = spawn("egress-gateway", ["serve"], env, logs, free_port())
        try:
            server.wait_ready("/status")
            yield Egress(
                Gateway(server, home, env, f"sqlite+aiosqlite:///{home}/orchestra.db"),
                proxy,
                fake,
            )
        finally:
            server.stop()


@pytest.fixture
def apps(request: pytest.FixtureRequest, egress: Egress, issued_secrets: set[str]) -> Apps:
    return Apps(egress.gateway, None, issued_secrets, request.node.name[5:30].replace("_", "-"))


def _sdk(egress: Egress, token: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        api_key=token,
        base_url=f"{egress.gateway.url}/v1",
        max_retries=0,
        timeout=15,
        http_client=openai.DefaultAsyncHttpxClient(verify=TLS),
    )


def _received(fake: TLSFake, marker: str) -> int:
    return sum(marker in json.dumps(r["body"]) for r in fake.requests())


async def test_answers_stream_through_the_tunnel_and_no_proxy_hosts_go_direct(
    egress: Egress, apps: Apps
) -> None:
    proxied = await apps.add(base_url=egress.fake.base_url("localhost"))
    direct = await apps.add(base_url=egress.fake.base_url("127.0.0.1"))
    tunnels_before = len(egress.proxy.tunnels())
    for app, marker in ((proxied, "via-proxy"), (direct, "no-proxy")):
        async with _sdk(egress, app.token) as client:
            stream = await client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": marker}], stream=True
            )
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text, marker
        assert _received(egress.fake, marker) == 1
    # The proxied app opened a tunnel to its name; the NO_PROXY one never reached the proxy.
    tunnels = egress.proxy.tunnels()[tunnels_before:]
    assert tunnels == [f"localhost:{egress.fake.port}"]
    assert all("127.0.0.1" not in target for _, target in egress.proxy.requests())


async def test_a_refused_tunnel_is_a_502_upstream_error(egress: Egress, apps: Apps) -> None:
    app = await apps.add(base_url="https://localhost:9/v1")  # not a port the proxy allows
    async with egress.gateway.client() as http:
        response = await http.post(
            "/v1/chat/completions",
            headers=app.auth,
            json={"model": MODEL, "messages": [{"role": "user", "content": "refused"}]},
        )
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "upstream_error"
    assert error["message"] == (
        f"The egress proxy 127.0.0.1:{egress.proxy.port} refused the tunnel to localhost:9 "
        "(HTTP 403: forbidden by the proxy's rules)."
    )
    assert "localhost:9" in egress.proxy.tunnels()


async def test_the_proxy_password_is_never_logged(egress: Egress, apps: Apps) -> None:
    app = await apps.add(base_url=egress.fake.base_url("localhost"))
    async with egress.gateway.client() as http:
        response = await http.post(
            "/v1/chat/completions",
            headers=app.auth,
            json={"model": MODEL, "messages": [{"role": "user", "content": "log-check"}]},
        )
    assert response.status_code == 200
    assert _received(egress.fake, "log-check") == 1
    assert PROXY_PASSWORD not in egress.gateway.server.stderr()
    logs = Path(egress.gateway.server.stderr_path).parent
    for path in logs.iterdir():
        assert PROXY_PASSWORD not in path.read_text(errors="replace"), path
