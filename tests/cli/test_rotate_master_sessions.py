"""`orchestra keys rotate-master` and end users' sessions, against a real gateway process.

Session secrets are stored encrypted under the master key like the provider keys: a rotation
that left them behind made every app's sessions unverifiable (500 on every session) once the
old key was dropped and the gateway restarted.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.security.keyring import Keyring, generate_master_key
from gateway.services import sessions as session_service
from tests.cli.conftest import Orchestra, add_app, fails, ok, with_database
from tests.gateway.http.conftest import Gateway, running_gateway


def _key_file(home: Path) -> list[str]:
    return (home / "master.key").read_text().strip().split(",")


def _secret_ciphertexts(home: Path) -> dict[str, str]:
    with sqlite3.connect(home / "orchestra.db") as connection:
        rows = connection.execute("SELECT kid, ciphertext FROM session_secrets").fetchall()
    connection.close()
    return dict(rows)


def _mint(gateway: Gateway, app_token: str, user: str) -> str:
    response = httpx.post(
        f"{gateway.url}/sessions",
        json={"user": user},
        headers={"Authorization": f"Bearer {app_token}"},
    )
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    return token


def _status(gateway: Gateway, token: str) -> httpx.Response:
    return httpx.get(f"{gateway.url}/status", headers={"Authorization": f"Bearer {token}"})


def _user_of(gateway: Gateway, token: str) -> Any:
    response = _status(gateway, token)
    assert response.status_code == 200, response.text
    assert "user" in response.json(), f"the session was not accepted: {response.text}"
    return response.json()["user"]["id"]


def _no_traceback(gateway: Gateway) -> None:
    assert "Traceback" not in gateway.server.stderr()


@pytest.mark.parametrize("where", ["key file", "environment"])
def test_sessions_outlive_a_master_key_rotation_and_a_restart(
    orchestra: Orchestra,
    initialised: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    app_token = add_app(orchestra, "demo")["token"]
    [old] = _key_file(initialised)
    logs = tmp_path / "logs"
    with running_gateway(initialised, logs, name="before") as gateway:
        session = _mint(gateway, app_token, "alice")
        assert _user_of(gateway, session) == "alice"
    before = _secret_ciphertexts(initialised)
    assert len(before) == 1

    new = generate_master_key()
    if where == "environment":
        monkeypatch.setenv("ORCHESTRA_MASTER_KEY", f"{new},{old}")
    result = ok(orchestra("keys", "rotate-master"))
    assert "(0 provider key(s), 1 session secret(s))" in " ".join(result.stdout.split())
    after = _secret_ciphertexts(initialised)
    assert set(after) == set(before) and after != before
    if where == "key file":
        [new] = _key_file(initialised)
        assert new != old
    # The old key is gone: from the file (the command dropped it) or from the environment.
    overrides = {} if where == "key file" else {"master_key": new}
    with running_gateway(initialised, logs, name="after", **overrides) as gateway:
        assert _user_of(gateway, session) == "alice"
        assert _user_of(gateway, _mint(gateway, app_token, "bob")) == "bob"
        _no_traceback(gateway)
    for ciphertext in after.values():
        Keyring([new]).rotate(ciphertext, what="session secret")  # readable with the new key alone


def test_a_session_secret_that_cannot_be_read_is_named_not_a_traceback(
    orchestra: Orchestra, initialised: Path, tmp_path: Path
) -> None:
    add_app(orchestra, "fine", key="sk-fine-0123456789")
    broken_token = add_app(orchestra, "broken")["token"]
    # A session secret written under a master key this installation does not have.
    stranger = Keyring([generate_master_key()])
    with_database(lambda db: session_service.rotate_secret(db, stranger, app_name="broken"))
    [old] = _key_file(initialised)
    before = _secret_ciphertexts(initialised)

    result = fails(orchestra("keys", "rotate-master"), 5, "session secret cannot be decrypted")
    message = " ".join(result.stderr.split())
    assert "of the app 'broken'" in message
    assert "`orchestra sessions rotate-secret broken --revoke`" in message
    assert "Traceback" not in result.output
    assert old in _key_file(initialised)  # every stored key is still readable
    assert _secret_ciphertexts(initialised) == before

    with running_gateway(initialised, tmp_path / "logs") as gateway:
        refused = httpx.post(
            f"{gateway.url}/sessions",
            json={"user": "u"},
            headers={"Authorization": f"Bearer {broken_token}"},
        )
        assert refused.status_code == 500
        assert refused.json()["error"]["code"] == "master_key_error"
        assert "session secret cannot be decrypted" in refused.json()["error"]["message"]
        _no_traceback(gateway)

    # The way out the message names.
    ok(orchestra("sessions", "rotate-secret", "broken", "--revoke"))
    ok(orchestra("keys", "rotate-master"))
    assert old not in _key_file(initialised)
