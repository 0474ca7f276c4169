from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.core.errors import Unauthenticated
from gateway.services import tokens
from tests.cli.conftest import Orchestra, add_app, fails, json_of, ok, with_database

TOKEN_FIELDS = {"id", "app_id", "hint", "label", "state", "created_at", "expires_at", "revoked_at"}


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture
def demo(orchestra: Orchestra, initialised: Path) -> dict[str, object]:
    created: dict[str, object] = add_app(orchestra, "demo")
    return created


def test_issue_json_shape(orchestra: Orchestra, demo: dict[str, object]) -> None:
    before = datetime.now(UTC)
    issued = json_of(
        orchestra("tokens", "issue", "demo", "--label", "ci", "--expires-in", "30d", "--json")
    )
    assert set(issued) == {"id", "token", "label", "expires_at"}
    assert issued["id"].startswith("tok_")
    assert issued["token"].startswith("orc_")
    assert issued["label"] == "ci"
    expires_at = _when(issued["expires_at"])
    assert before + timedelta(days=30) <= expires_at <= datetime.now(UTC) + timedelta(days=30)
    ctx = with_database(lambda db: tokens.authenticate(db, issued["token"]))
    assert ctx.token_id == issued["id"]


def test_issue_without_options(orchestra: Orchestra, demo: dict[str, object]) -> None:
    issued = json_of(orchestra("tokens", "issue", "demo", "--json"))
    assert issued["label"] is None
    assert issued["expires_at"] is None


def test_issue_prints_the_secret_once(orchestra: Orchestra, demo: dict[str, object]) -> None:
    result = ok(orchestra("tokens", "issue", "demo", "--label", "web"))
    lines = [line.strip() for line in result.stdout.splitlines() if line.startswith("orc_")]
    assert len(lines) == 1
    assert "shown only this once" in result.stdout
    assert with_database(lambda db: tokens.authenticate(db, lines[0])).app_name == "demo"


@pytest.mark.parametrize("bad", ["3x", "30", "d", "-1d", "1.5h", "thirty"])
def test_a_malformed_expiry_is_refused_precisely(
    orchestra: Orchestra, demo: dict[str, object], bad: str
) -> None:
    fails(
        orchestra("tokens", "issue", "demo", "--expires-in", bad),
        2,
        f"Malformed duration {bad!r}: use a whole number and a unit s, m, h, d or w (e.g. 30d).",
    )
    assert len(json_of(orchestra("tokens", "list", "demo", "--json"))) == 1


def test_a_zero_expiry_is_refused(orchestra: Orchestra, demo: dict[str, object]) -> None:
    fails(orchestra("tokens", "issue", "demo", "--expires-in", "0d"), 2, "greater than zero")


def test_issue_for_an_unknown_app(orchestra: Orchestra, initialised: Path) -> None:
    fails(orchestra("tokens", "issue", "nope"), 3, "No app named 'nope'")


def test_list_shows_ids_labels_dates_and_never_the_secret(
    orchestra: Orchestra, demo: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # a wide terminal: ids are not folded over two lines
    issued = json_of(orchestra("tokens", "issue", "demo", "--label", "ci", "--json"))
    listed = json_of(orchestra("tokens", "list", "demo", "--json"))
    assert [t["label"] for t in listed] == ["initial", "ci"]
    assert all(set(t) >= TOKEN_FIELDS for t in listed)
    assert all(t["state"] == "active" for t in listed)
    assert listed[1]["id"] == issued["id"]
    assert listed[1]["hint"] == issued["token"][:8] + "…"
    human = ok(orchestra("tokens", "list", "demo"))
    for secret in (demo["token"], issued["token"]):
        assert isinstance(secret, str)
        assert secret not in str(listed)
        assert secret not in human.output
    assert issued["id"] in human.stdout


def test_list_for_an_unknown_app(orchestra: Orchestra, initialised: Path) -> None:
    fails(orchestra("tokens", "list", "nope"), 3, "No app named 'nope'")


def test_revoke_makes_the_token_unusable(orchestra: Orchestra, demo: dict[str, object]) -> None:
    issued = json_of(orchestra("tokens", "issue", "demo", "--json"))
    with_database(lambda db: tokens.authenticate(db, issued["token"]))
    result = ok(orchestra("tokens", "revoke", issued["id"]))
    assert f"Token {issued['id']} revoked." in result.stdout
    with pytest.raises(Unauthenticated):
        with_database(lambda db: tokens.authenticate(db, issued["token"]))
    states = {t["id"]: t["state"] for t in json_of(orchestra("tokens", "list", "demo", "--json"))}
    assert states[issued["id"]] == "revoked"
    # The app's other token is untouched.
    assert with_database(lambda db: tokens.authenticate(db, str(demo["token"]))).app_name == "demo"


def test_revoke_json_and_twice(orchestra: Orchestra, demo: dict[str, object]) -> None:
    issued = json_of(orchestra("tokens", "issue", "demo", "--json"))
    first = json_of(orchestra("tokens", "revoke", issued["id"], "--json"))
    assert set(first) >= TOKEN_FIELDS
    assert first["state"] == "revoked"
    assert first["revoked_at"] is not None
    again = json_of(orchestra("tokens", "revoke", issued["id"], "--json"))
    assert again["revoked_at"] == first["revoked_at"]


def test_revoke_an_unknown_id(orchestra: Orchestra, initialised: Path) -> None:
    fails(
        orchestra("tokens", "revoke", "tok_nope"),
        3,
        "No token with id 'tok_nope'. See `orchestra tokens list APP` for ids.",
    )


def test_revoke_given_the_secret_instead_of_the_id_does_not_echo_it(
    orchestra: Orchestra, demo: dict[str, object]
) -> None:
    secret = str(demo["token"])
    result = orchestra("tokens", "revoke", secret)
    assert result.exit_code != 0
    assert secret not in result.output
    assert "tokens list" in result.stderr
