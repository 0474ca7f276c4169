from __future__ import annotations

from pathlib import Path

import pytest

from gateway.core.errors import AppDisabled
from gateway.services import tokens
from tests.cli.conftest import Orchestra, add_app, fails, json_of, ok, with_database

APP_FIELDS = {
    "id",
    "name",
    "origins",
    "model",
    "allowed_models",
    "base_url",
    "system_prompt",
    "max_output_tokens",
    "log_content",
    "disabled",
    "has_provider_key",
    "created_at",
    "updated_at",
}


def _names(orchestra: Orchestra) -> list[str]:
    return [app["name"] for app in json_of(orchestra("apps", "list", "--json"))]


def test_add_json_shape_and_the_token_works(orchestra: Orchestra, initialised: Path) -> None:
    created = add_app(orchestra, "demo", "--origin", "http://localhost:4200", key="sk-test")
    assert set(created) == {"app", "token"}
    assert set(created["app"]) >= APP_FIELDS  # later issues may add fields
    app = created["app"]
    assert app["name"] == "demo"
    assert app["id"].startswith("app_")
    assert app["origins"] == ["http://localhost:4200"]
    assert app["model"] == "gpt-4o-mini"
    assert app["base_url"] == "https://api.openai.com/v1"
    assert app["has_provider_key"] is True
    assert app["disabled"] is False
    assert app["created_at"].endswith("Z")
    assert created["token"].startswith("orc_")
    ctx = with_database(lambda db: tokens.authenticate(db, created["token"]))
    assert ctx.app_id == app["id"]


def test_add_with_every_option(orchestra: Orchestra, initialised: Path) -> None:
    app = add_app(
        orchestra,
        "full",
        "--origin",
        "http://localhost:4200",
        "--origin",
        "https://App.Example.com/",
        "--model",
        "llama3.1",
        "--allow-model",
        "gpt-4o-mini",
        "--base-url",
        "http://localhost:11434/v1/",
        "--system-prompt",
        "Be brief.",
        "--max-output-tokens",
        "64",
        "--log-content",
        "full",
    )["app"]
    assert app["origins"] == ["http://localhost:4200", "https://app.example.com"]
    assert app["model"] == "llama3.1"
    assert app["allowed_models"] == ["llama3.1", "gpt-4o-mini"]
    assert app["base_url"] == "http://localhost:11434/v1"
    assert app["system_prompt"] == "Be brief."
    assert app["max_output_tokens"] == 64
    assert app["log_content"] == "full"
    assert app["has_provider_key"] is False


def test_add_prints_the_token_once_and_the_next_step(
    orchestra: Orchestra, initialised: Path
) -> None:
    result = ok(orchestra("apps", "add", "demo"))
    token_lines = [line for line in result.stdout.splitlines() if line.startswith("orc_")]
    assert len(token_lines) == 1
    assert "shown only this once" in result.stdout
    assert "orchestra keys set demo" in result.stdout
    token = token_lines[0].strip()
    assert with_database(lambda db: tokens.authenticate(db, token)).app_name == "demo"


def test_add_with_the_key_on_stdin(orchestra: Orchestra, initialised: Path) -> None:
    result = ok(orchestra("apps", "add", "demo", "--openai-key-stdin", input="sk-test\n"))
    assert "sk-test" not in result.output
    assert "orchestra keys set" not in result.stdout
    assert json_of(orchestra("apps", "show", "demo", "--json"))["has_provider_key"] is True


@pytest.mark.parametrize("stdin", ["", "\n", "   \n"])
def test_add_with_an_empty_key_on_stdin_is_refused(
    orchestra: Orchestra, initialised: Path, stdin: str
) -> None:
    fails(orchestra("apps", "add", "demo", "--openai-key-stdin", input=stdin), 2, "is empty")
    assert _names(orchestra) == []


def test_add_a_duplicate_name(orchestra: Orchestra, initialised: Path) -> None:
    add_app(orchestra, "demo")
    fails(orchestra("apps", "add", "demo"), 4, "An app named 'demo' already exists.")
    assert _names(orchestra) == ["demo"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["Demo App"], "Invalid app name 'Demo App'"),
        (["demo", "--origin", "localhost:4200"], "Invalid origin 'localhost:4200'"),
        (["demo", "--origin", "http://localhost:4200/path"], "Invalid origin"),
        (["demo", "--base-url", "api.openai.com"], "Invalid base URL 'api.openai.com'"),
        (["demo", "--base-url", "https://u:p@api.openai.com/v1"], "credentials"),
        (["demo", "--log-content", "all"], "Invalid log content 'all'"),
        (["demo", "--max-output-tokens", "0"], "--max-output-tokens must be greater than zero"),
        (["demo", "--model", "gpt 4"], "Invalid model name"),
    ],
)
def test_add_refuses_bad_input_and_creates_nothing(
    orchestra: Orchestra, initialised: Path, args: list[str], message: str
) -> None:
    fails(orchestra("apps", "add", *args), 2, message)
    assert _names(orchestra) == []


def test_add_refuses_a_non_numeric_option(orchestra: Orchestra, initialised: Path) -> None:
    result = orchestra("apps", "add", "demo", "--max-output-tokens", "many")
    assert result.exit_code == 2
    assert "Invalid value for '--max-output-tokens'" in result.stderr
    assert _names(orchestra) == []


def test_list(orchestra: Orchestra, initialised: Path) -> None:
    assert json_of(orchestra("apps", "list", "--json")) == []
    add_app(orchestra, "zulu")
    add_app(orchestra, "alpha", key="sk-alpha-key")
    listed = json_of(orchestra("apps", "list", "--json"))
    assert [app["name"] for app in listed] == ["alpha", "zulu"]
    assert all(set(app) >= APP_FIELDS for app in listed)
    assert [app["has_provider_key"] for app in listed] == [True, False]
    table = ok(orchestra("apps", "list")).stdout
    assert "alpha" in table
    assert "zulu" in table
    assert "missing" in table


def test_list_on_an_80_column_terminal_cuts_no_id_model_or_url(
    orchestra: Orchestra, initialised: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rich used to shrink every column and print `gpt-4o-mi…` and `http://1…` at 80 columns."""
    origins = ["https://support.example.com", "http://localhost:4200"]
    base_url = "https://my-resource.openai.azure.com/openai/v1"
    added = add_app(
        orchestra,
        "support-assistant",
        *(option for origin in origins for option in ("--origin", origin)),
        "--model",
        "gpt-4o-mini-2024-07-18",
        "--base-url",
        base_url,
    )["app"]
    add_app(orchestra, "demo", "--base-url", "http://127.0.0.1:9100/v1")
    monkeypatch.setenv("COLUMNS", "80")
    out = ok(orchestra("apps", "list")).stdout
    assert "…" not in out
    assert max(len(line) for line in out.splitlines()) <= 80
    lines = [line.strip() for line in out.splitlines()]
    for whole in (added["id"], "gpt-4o-mini-2024-07-18", base_url, *origins, "support-assistant"):
        assert any(whole in line for line in lines), (whole, out)
    assert "http://127.0.0.1:9100/v1" in out
    # Where the columns fit, it stays a table: one line per app.
    monkeypatch.setenv("COLUMNS", "240")
    out = ok(orchestra("apps", "list")).stdout
    row = next(line for line in out.splitlines() if added["id"] in line)
    assert "support-assistant" in row and base_url in row and "gpt-4o-mini-2024-07-18" in row


def test_show(orchestra: Orchestra, initialised: Path) -> None:
    created = add_app(orchestra, "demo", "--system-prompt", "Be brief.")
    assert json_of(orchestra("apps", "show", "demo", "--json")) == created["app"]
    human = ok(orchestra("apps", "show", "demo")).stdout
    assert "demo" in human
    assert "Be brief." in human
    assert created["app"]["id"] in human


def test_unknown_app(orchestra: Orchestra, initialised: Path) -> None:
    message = "No app named 'nope'. See `orchestra apps list`."
    fails(orchestra("apps", "show", "nope"), 3, message)
    fails(orchestra("apps", "update", "nope", "--model", "x"), 3, message)
    fails(orchestra("apps", "disable", "nope"), 3, message)
    fails(orchestra("apps", "enable", "nope"), 3, message)
    fails(orchestra("apps", "remove", "nope", "--yes"), 3, message)


def test_update(orchestra: Orchestra, initialised: Path) -> None:
    before = add_app(orchestra, "demo", "--origin", "http://localhost:4200")["app"]
    after = json_of(
        orchestra(
            "apps",
            "update",
            "demo",
            "--model",
            "gpt-4.1",
            "--base-url",
            "https://proxy.example.com/v1",
            "--json",
        )
    )
    assert after["model"] == "gpt-4.1"
    assert after["base_url"] == "https://proxy.example.com/v1"
    assert after["origins"] == before["origins"]
    assert after["id"] == before["id"]
    human = ok(orchestra("apps", "update", "demo", "--origin", "https://a.example.com"))
    assert "App 'demo' updated." in human.stdout
    assert json_of(orchestra("apps", "show", "demo", "--json"))["origins"] == [
        "https://a.example.com"
    ]


def test_update_refuses_bad_input(orchestra: Orchestra, initialised: Path) -> None:
    before = add_app(orchestra, "demo")["app"]
    fails(orchestra("apps", "update", "demo", "--origin", "nope"), 2, "Invalid origin 'nope'")
    fails(orchestra("apps", "update", "demo", "--base-url", "ftp://x"), 2, "Invalid base URL")
    assert json_of(orchestra("apps", "show", "demo", "--json")) == before


def test_update_the_answer_cache(orchestra: Orchestra, initialised: Path) -> None:
    token = add_app(orchestra, "demo")["token"]
    cache = json_of(orchestra("apps", "update", "demo", "--cache-ttl", "10m", "--json"))["cache"]
    assert cache == {"ttl_s": 600, "nondeterministic": False}
    on = orchestra("apps", "update", "demo", "--cache-nondeterministic", "--json")
    assert json_of(on)["cache"] == {"ttl_s": 600, "nondeterministic": True}
    off = orchestra("apps", "update", "demo", "--cache-ttl", "0", "--json")
    assert json_of(off)["cache"] == {"ttl_s": 0, "nondeterministic": True}
    context = with_database(lambda db: tokens.authenticate(db, token))
    assert (context.cache_ttl_s, context.cache_nondeterministic) == (0, True)
    fails(orchestra("apps", "update", "demo", "--cache-ttl", "10 minutes"), 2, "--cache-ttl")
    fails(orchestra("apps", "update", "demo", "--cache-ttl", "30d"), 2, "--cache-ttl")


def test_disable_and_enable(orchestra: Orchestra, initialised: Path) -> None:
    token = add_app(orchestra, "demo")["token"]
    assert json_of(orchestra("apps", "disable", "demo", "--json"))["disabled"] is True
    with pytest.raises(AppDisabled):
        with_database(lambda db: tokens.authenticate(db, token))
    assert "App 'demo' enabled." in ok(orchestra("apps", "enable", "demo")).stdout
    assert with_database(lambda db: tokens.authenticate(db, token)).app_name == "demo"
    assert "App 'demo' disabled." in ok(orchestra("apps", "disable", "demo")).stdout
    assert json_of(orchestra("apps", "enable", "demo", "--json"))["disabled"] is False


def test_remove_with_yes(orchestra: Orchestra, initialised: Path) -> None:
    add_app(orchestra, "demo", key="sk-test")
    add_app(orchestra, "kept")
    assert "App 'demo' removed." in ok(orchestra("apps", "remove", "demo", "--yes")).stdout
    assert _names(orchestra) == ["kept"]
    ok(orchestra("apps", "remove", "kept", "-y"))
    assert _names(orchestra) == []


def test_remove_asks_first(orchestra: Orchestra, initialised: Path) -> None:
    add_app(orchestra, "demo")
    refused = orchestra("apps", "remove", "demo", input="n\n")
    assert refused.exit_code != 0
    assert "Remove app 'demo'" in refused.stdout
    assert _names(orchestra) == ["demo"]
    no_answer = orchestra("apps", "remove", "demo", input="")
    assert no_answer.exit_code != 0
    assert _names(orchestra) == ["demo"]
    ok(orchestra("apps", "remove", "demo", input="y\n"))
    assert _names(orchestra) == []


def test_a_removed_apps_token_stops_working(orchestra: Orchestra, initialised: Path) -> None:
    from gateway.core.errors import Unauthenticated

    token = add_app(orchestra, "demo")["token"]
    ok(orchestra("apps", "remove", "demo", "--yes"))
    with pytest.raises(Unauthenticated):
        with_database(lambda db: tokens.authenticate(db, token))
