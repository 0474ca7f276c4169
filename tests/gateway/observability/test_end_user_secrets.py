"""No end user's credential, nor what signs one, ever reaches a log, a record, /metrics or
the CLI's output (issue #14).

A gateway of its own per log format (json, then human; at DEBUG, so every library line is
there too) serves the whole end-user flow: sessions minted with the app's ``orc_`` token and
used on /ask (streamed and not), /v1/chat/completions, /v1/models and /status; refused where a
session cannot go; an expired and a tampered session; sessions presented the wrong way (in the
query, without ``Bearer``); OpenID Connect access tokens from a local provider (good, expired,
for another audience). Then everything an operator can see is captured and searched for every
credential (whole, and the signature part of each JWT) and every session secret (as stored,
base64 and hex): the gateway's stderr, ``/logs`` records, ``/metrics``, ``sessions
rotate-secret --json``, ``sessions revoke --json``, ``apps show`` (both forms) and ``usage --by
user``. The error bodies the clients got must not echo what they presented either.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta

import httpx
import pytest

from gateway.security.sessions import mint_session
from gateway.services import sessions as session_service
from gateway.storage import sessions as session_rows
from gateway.storage.database import Database
from gateway.storage.tables import utcnow
from tests.gateway.http.conftest import (
    ADMIN_TOKEN,
    MODEL,
    AppHandle,
    Apps,
    Fake,
    Gateway,
    child_env,
    poll,
    run_cli,
    running_gateway,
)
from tests.support.oidc_provider import OidcProvider

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module", params=["json", "human"])
def own_gateway(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    root = tmp_path_factory.mktemp(f"end-user-secrets-{request.param}")
    home = root / "home"
    run_cli(["init"], child_env({"home": home}))
    with running_gateway(
        home, root / "logs", name="gateway", log_format=request.param, log_level="DEBUG"
    ) as gateway:
        yield gateway


@pytest.fixture
def provider() -> Iterator[OidcProvider]:
    with OidcProvider.running(audience=f"aud-{secrets.token_hex(4)}") as running:
        yield running


@dataclass
class Seen:
    """What must never show, and what an operator or a refused client got to see."""

    credentials: set[str] = field(default_factory=set)
    session_secrets: set[bytes] = field(default_factory=set)
    #: Bodies of answers to requests that presented a credential (never the mint answers).
    answers: list[str] = field(default_factory=list)
    cli: list[str] = field(default_factory=list)

    def credential(self, token: str) -> str:
        """Remember ``token``: it, its last 16 characters, and for a JWT its claims and its
        signature (whole, and either end) must never show."""
        self.credentials |= {token, token[-16:]}
        if token.count(".") == 2:
            _, claims, signature = token.split(".")
            self.credentials |= {claims, signature, signature[:16], signature[-16:]}
        return token

    def forbidden(self) -> list[str]:
        found = set(self.credentials)
        for secret in self.session_secrets:
            found |= {
                session_service.encode_secret(secret),
                session_service.encode_secret(secret).rstrip("="),
                base64.b64encode(secret).decode(),
                secret.hex(),
            }
        return sorted(found)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def stored_secrets(gateway: Gateway, app: AppHandle) -> set[bytes]:
    keyring = gateway.keyring()

    async def read(db: Database) -> set[bytes]:
        async with db.read() as session:
            rows = await session_rows.secrets_of(session, app.id)
        return {session_service.read_secret(keyring, row) for row in rows}

    return await gateway.with_database(read)


async def use(client: httpx.AsyncClient, seen: Seen, token: str, *, ok: bool) -> None:
    """Every route a session may use, and two it may not; each answer kept."""
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    answers = [
        await client.post("/ask", json={"prompt": "hi"}, headers=bearer(token)),
        await client.post("/ask", json={"prompt": "hi", "stream": False}, headers=bearer(token)),
        await client.post("/v1/chat/completions", json=chat, headers=bearer(token)),
        await client.post(
            "/v1/chat/completions", json={**chat, "stream": True}, headers=bearer(token)
        ),
        await client.get("/v1/models", headers=bearer(token)),
        await client.get("/status", headers=bearer(token)),
    ]
    if ok:
        assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
        assert (
            await client.post("/sessions", json={"user": "x"}, headers=bearer(token))
        ).status_code == 403
        assert (await client.get("/logs", headers=bearer(token))).status_code == 403
    else:
        assert all(a.status_code == 401 for a in answers[:-1]), [a.text for a in answers]
    answers.append(await client.post(f"/ask?token={token}", json={"prompt": "hi"}))
    answers.append(
        await client.post("/ask", json={"prompt": "hi"}, headers={"Authorization": token})
    )
    seen.answers += [a.text for a in answers]


async def the_whole_flow(gateway: Gateway, apps: Apps, provider: OidcProvider) -> Seen:
    seen = Seen()
    app = await apps.add()
    seen.credential(app.token)
    assert app.provider_key is not None
    seen.credential(app.provider_key)
    seen.credential(ADMIN_TOKEN)
    seen.cli.append(
        await gateway.cli(
            "apps", "update", app.name,
            "--oidc-issuer", provider.issuer, "--oidc-audience", provider.audience,
        )
    )  # fmt: skip
    async with gateway.client() as client:
        minted = await client.post(
            "/sessions", json={"user": "alice", "ttl_s": 600}, headers=app.auth
        )
        assert minted.status_code == 201, minted.text
        session = seen.credential(minted.json()["token"])
        await use(client, seen, session, ok=True)

        [secret] = await stored_secrets(gateway, app)
        seen.session_secrets.add(secret)
        kid = json.loads(base64.urlsafe_b64decode(session.split(".")[0] + "=="))["kid"]
        expired = mint_session(
            app_id=app.id,
            user="alice",
            secret=secret,
            kid=kid,
            ttl_s=60,
            now=utcnow() - timedelta(minutes=10),
        ).token
        await use(client, seen, seen.credential(expired), ok=False)
        header, payload, signature = session.split(".")
        tampered = f"{header}.{payload[:-4]}AAAA.{signature}"
        await use(client, seen, seen.credential(tampered), ok=False)

        key = provider.add_key("RS256")
        await use(client, seen, seen.credential(provider.token(key, sub="bob")), ok=True)
        now = int(utcnow().timestamp())
        late = provider.token(key, sub="bob", iat=now - 600, exp=now - 120)
        await use(client, seen, seen.credential(late), ok=False)
        elsewhere = provider.token(key, sub="bob", aud="another-audience")
        await use(client, seen, seen.credential(elsewhere), ok=False)

        for name, args in (
            ("rotate", ["sessions", "rotate-secret", app.name, "--json"]),
            ("revoke", ["sessions", "revoke", app.name, "--user", "alice", "--json"]),
            ("show", ["apps", "show", app.name]),
            ("show json", ["apps", "show", app.name, "--json"]),
            ("usage", ["usage", "--app", app.name, "--by", "user", "--json"]),
        ):
            out = await gateway.cli(*args)
            assert out.strip(), name
            seen.cli.append(out)
        seen.session_secrets |= await stored_secrets(gateway, app)
        assert len(seen.session_secrets) == 2  # the retired one and the new one

        async def records() -> list[object]:
            response = await client.get(
                "/logs", params={"app": app.name, "limit": 1000}, headers=bearer(ADMIN_TOKEN)
            )
            assert response.status_code == 200, response.text
            found: list[object] = response.json()["records"]
            return found

        logged = await poll(records, lambda rs: len(rs) >= 8)
        seen.cli.append(json.dumps(logged))
        users = {record["user"] for record in logged if isinstance(record, dict)}
        assert {"alice", "bob"} <= users, users
        own = await client.get("/logs", headers=app.auth)
        seen.cli.append(own.text)
        metrics = await client.get("/metrics")
        assert metrics.status_code == 200
        seen.cli.append(metrics.text)
    return seen


async def test_no_end_user_credential_nor_session_secret_shows_anywhere(
    own_gateway: Gateway, fake: Fake, issued_secrets: set[str], provider: OidcProvider
) -> None:
    apps = Apps(own_gateway, fake, issued_secrets, "leak")
    seen = await the_whole_flow(own_gateway, apps, provider)
    log = own_gateway.server.stderr()
    assert "/sessions" in log and "/v1/chat/completions" in log  # the flow was logged
    operator = {"log": log, "records, /logs, /metrics, CLI output": "\n".join(seen.cli)}
    places = {**operator, "answers to the clients": "\n".join(seen.answers)}
    for where, text in places.items():
        leaked = [secret[:12] + "…" for secret in seen.forbidden() if secret in text]
        assert not leaked, f"{where} shows {leaked}"
    for where, text in operator.items():
        # Nor anything shaped like a JWT, a client token or an Authorization header.
        for shape in ("eyJ", "orc_", "Bearer "):
            assert shape not in text, (where, shape)
