"""OpenID Connect sign-in against the real gateway and a real local OpenID provider.

The gateway (its own, with a 1 s key refetch interval so a rotation is quick to see) fetches
the provider's discovery document and keys over HTTP; the tests sign access tokens with keys
they generate, configure apps with `orchestra apps update --oidc-issuer/--oidc-audience`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Iterator

import anyio
import httpx
import pytest

from gateway.services.end_users import RELOAD_INTERVAL_S
from tests.gateway.http.conftest import (
    ORCHESTRA,
    AppHandle,
    Apps,
    Fake,
    Gateway,
    assert_error,
    child_env,
    run_cli,
    running_gateway,
)
from tests.support.oidc_provider import OidcProvider

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def oidc_gateway(tmp_path_factory: pytest.TempPathFactory, fake: Fake) -> Iterator[Gateway]:
    root = tmp_path_factory.mktemp("oidc")
    home = root / "home"
    run_cli(["init"], child_env({"home": home}))
    with running_gateway(home, root / "logs", name="oidc-gateway", oidc_key_refetch_s=1) as gw:
        yield gw


@pytest.fixture
def oidc_apps(oidc_gateway: Gateway, fake: Fake, issued_secrets: set[str]) -> Apps:
    return Apps(oidc_gateway, fake, issued_secrets, "oidc")


@pytest.fixture
def provider() -> Iterator[OidcProvider]:
    with OidcProvider.running(audience=f"aud-{secrets.token_hex(4)}") as running:
        yield running


async def signed_in(gateway: Gateway, apps: Apps, provider: OidcProvider) -> AppHandle:
    app = await apps.add()
    await gateway.cli(
        "apps",
        "update",
        app.name,
        "--oidc-issuer",
        provider.issuer,
        "--oidc-audience",
        provider.audience,
    )
    # The gateway looks its directory of OpenID apps up again at most once a second (a flood
    # of tokens naming unknown issuers costs the database one query a second): a previous
    # test's tokens may have made it look in the second before this configuration.
    await anyio.sleep(RELOAD_INTERVAL_S)
    return app


async def ask(gateway: Gateway, token: str) -> httpx.Response:
    async with gateway.client() as client:
        return await client.post(
            "/ask",
            json={"prompt": "hi", "stream": False},
            headers={"Authorization": f"Bearer {token}"},
        )


async def test_a_valid_access_token_asks_as_its_user(
    oidc_gateway: Gateway, oidc_apps: Apps, provider: OidcProvider
) -> None:
    app = await signed_in(oidc_gateway, oidc_apps, provider)
    key = provider.add_key("RS256")
    response = await ask(oidc_gateway, provider.token(key, sub="alice"))
    assert response.status_code == 200, response.text
    for alg in ("ES256", "EdDSA"):
        other = provider.add_key(alg)
        await anyio.sleep(1.1)  # past the refetch interval: the new kid is fetched
        assert (await ask(oidc_gateway, provider.token(other, sub="bob"))).status_code == 200
    async with oidc_gateway.client() as client:
        status = await client.get(
            "/status", headers={"Authorization": f"Bearer {provider.token(key, sub='alice')}"}
        )
        user = status.json()["user"]
        assert (user["id"], user["credential"]) == ("alice", "oidc")
        assert user["quota"]["remaining"] == {}  # no per-user limit set on this app
        logs = await client.get("/logs", headers={"Authorization": f"Bearer {provider.token(key)}"})
        assert_error(logs, 403, "insufficient_scope")
    assert app.name in (await oidc_gateway.cli("apps", "show", app.name))


async def test_wrong_audience_issuer_expired_and_forged_tokens_are_refused(
    oidc_gateway: Gateway, oidc_apps: Apps, provider: OidcProvider
) -> None:
    await signed_in(oidc_gateway, oidc_apps, provider)
    key = provider.add_key("RS256")
    assert (await ask(oidc_gateway, provider.token(key))).status_code == 200
    now = int(time.time())
    for token in (
        provider.token(key, aud="another-audience"),
        provider.token(key, iss="http://127.0.0.1:9"),
        provider.token(key, exp=None),
    ):
        assert_error(await ask(oidc_gateway, token), 401, "invalid_token")
    expired = provider.token(key, iat=now - 600, exp=now - 120)
    assert_error(await ask(oidc_gateway, expired), 401, "token_expired")
    claims = provider.claims()
    none_token = f"{_part({'alg': 'none', 'typ': 'JWT'})}.{_part(claims)}."
    assert_error(await ask(oidc_gateway, none_token), 401, "invalid_token")
    # HS256 "signed" with the provider's public key (the classic algorithm confusion).
    signing_input = f"{_part({'alg': 'HS256', 'kid': key.kid, 'typ': 'JWT'})}.{_part(claims)}"
    signature = hmac.new(key.public_pem(), signing_input.encode(), hashlib.sha256).digest()
    confused = f"{signing_input}.{_b64(signature)}"
    assert_error(await ask(oidc_gateway, confused), 401, "invalid_token")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _part(value: object) -> str:
    return _b64(json.dumps(value).encode())


async def test_the_providers_key_rotation_just_works(
    oidc_gateway: Gateway, oidc_apps: Apps, provider: OidcProvider
) -> None:
    await signed_in(oidc_gateway, oidc_apps, provider)
    old = provider.add_key("RS256")
    assert (await ask(oidc_gateway, provider.token(old))).status_code == 200
    new = provider.rotate("RS256")
    await anyio.sleep(1.1)
    assert (await ask(oidc_gateway, provider.token(new))).status_code == 200


async def test_a_provider_gone_keeps_cached_keys_and_is_503_without(
    oidc_gateway: Gateway, oidc_apps: Apps, provider: OidcProvider
) -> None:
    await signed_in(oidc_gateway, oidc_apps, provider)
    key = provider.add_key("RS256")
    assert (await ask(oidc_gateway, provider.token(key))).status_code == 200
    unseen = provider.add_key("ES256")
    provider.stop()
    assert (await ask(oidc_gateway, provider.token(key))).status_code == 200  # cached key
    await anyio.sleep(1.1)
    gone = await ask(oidc_gateway, provider.token(unseen))
    assert_error(gone, 503, "identity_provider_unavailable")


async def test_two_apps_cannot_share_an_issuer_and_audience(
    oidc_gateway: Gateway, oidc_apps: Apps, provider: OidcProvider
) -> None:
    await signed_in(oidc_gateway, oidc_apps, provider)
    other = await oidc_apps.add()
    result = await anyio.run_process(
        [
            str(ORCHESTRA),
            "apps",
            "update",
            other.name,
            "--oidc-issuer",
            provider.issuer,
            "--oidc-audience",
            provider.audience,
        ],
        env=oidc_gateway.env,
        check=False,
    )
    assert result.returncode == 4, result.stderr
    assert b"issuer and audience" in result.stderr
    private = await anyio.run_process(
        [
            str(ORCHESTRA),
            "apps",
            "update",
            other.name,
            "--oidc-issuer",
            "http://10.0.0.1/realms/x",
            "--oidc-audience",
            "a",
        ],
        env=oidc_gateway.env,
        check=False,
    )
    assert private.returncode == 2, private.stderr
