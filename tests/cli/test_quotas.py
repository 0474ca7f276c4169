from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.conftest import Orchestra, add_app, fails, json_of, ok

UNLIMITED = {
    "rpm": None,
    "tpm": None,
    "tokens_per_day": None,
    "max_concurrent": None,
    "budget_usd_month": None,
}


@pytest.fixture
def demo(orchestra: Orchestra, initialised: Path) -> None:
    add_app(orchestra, "demo")


def _limits(orchestra: Orchestra, *args: str) -> dict[str, object]:
    """The numeric limits of `quotas show|set ... --json` (other fields may be added)."""
    shown = json_of(orchestra("quotas", *args, "--json"))
    assert set(shown) == {"app", "limits"}
    assert shown["app"] == "demo"
    assert set(UNLIMITED) <= set(shown["limits"])
    return {key: shown["limits"][key] for key in UNLIMITED}


def test_show_an_app_without_limits(orchestra: Orchestra, demo: None) -> None:
    assert _limits(orchestra, "show", "demo") == UNLIMITED
    assert "unlimited" in ok(orchestra("quotas", "show", "demo")).stdout


def test_set_every_limit(orchestra: Orchestra, demo: None) -> None:
    limits = _limits(
        orchestra,
        "set",
        "demo",
        "--rpm",
        "60",
        "--tpm",
        "10000",
        "--tokens-per-day",
        "1000000",
        "--max-concurrent",
        "4",
        "--budget-usd-month",
        "25.5",
    )
    expected = {
        "rpm": 60,
        "tpm": 10000,
        "tokens_per_day": 1000000,
        "max_concurrent": 4,
        "budget_usd_month": 25.5,
    }
    assert limits == expected
    assert _limits(orchestra, "show", "demo") == expected
    human = ok(orchestra("quotas", "show", "demo")).stdout
    assert "10000" in human
    assert "25.5" in human


def test_set_keeps_what_is_not_given_and_zero_clears(orchestra: Orchestra, demo: None) -> None:
    ok(orchestra("quotas", "set", "demo", "--rpm", "60", "--tpm", "1000"))
    ok(orchestra("quotas", "set", "demo", "--rpm", "0", "--max-concurrent", "2"))
    assert _limits(orchestra, "show", "demo") == {
        **UNLIMITED,
        "tpm": 1000,
        "max_concurrent": 2,
    }


@pytest.mark.parametrize(
    "option", ["--rpm", "--tpm", "--tokens-per-day", "--max-concurrent", "--budget-usd-month"]
)
def test_negative_values_are_refused(orchestra: Orchestra, demo: None, option: str) -> None:
    fails(orchestra("quotas", "set", "demo", option, "-1"), 2, f"{option} cannot be negative.")
    assert _limits(orchestra, "show", "demo") == UNLIMITED


def test_a_non_numeric_value_is_a_usage_error(orchestra: Orchestra, demo: None) -> None:
    result = orchestra("quotas", "set", "demo", "--rpm", "lots")
    assert result.exit_code == 2
    assert "--rpm" in result.stderr


def test_unknown_app(orchestra: Orchestra, initialised: Path) -> None:
    fails(orchestra("quotas", "set", "nope", "--rpm", "1"), 3, "No app named 'nope'")
    fails(orchestra("quotas", "show", "nope"), 3, "No app named 'nope'")


USER_UNLIMITED = {
    "user_rpm": None,
    "user_tpm": None,
    "user_tokens_per_day": None,
    "user_max_concurrent": None,
    "user_budget_usd_month": None,
}


def _user_limits(orchestra: Orchestra, *args: str) -> dict[str, object]:
    shown = json_of(orchestra("quotas", *args, "--json"))
    return {key: shown["limits"][key] for key in USER_UNLIMITED}


def test_set_every_per_user_limit_beside_the_apps(orchestra: Orchestra, demo: None) -> None:
    ok(orchestra("quotas", "set", "demo", "--rpm", "100"))
    limits = _user_limits(
        orchestra,
        "set",
        "demo",
        "--user-rpm",
        "5",
        "--user-tpm",
        "2000",
        "--user-tokens-per-day",
        "50000",
        "--user-max-concurrent",
        "2",
        "--user-budget-usd-month",
        "1.5",
    )
    expected = {
        "user_rpm": 5,
        "user_tpm": 2000,
        "user_tokens_per_day": 50000,
        "user_max_concurrent": 2,
        "user_budget_usd_month": 1.5,
    }
    assert limits == expected
    assert _user_limits(orchestra, "show", "demo") == expected
    assert _limits(orchestra, "show", "demo") == {**UNLIMITED, "rpm": 100}
    human = ok(orchestra("quotas", "show", "demo")).stdout
    assert "user_tokens_per_day" in human
    assert "50000" in human


def test_zero_clears_a_per_user_limit(orchestra: Orchestra, demo: None) -> None:
    ok(orchestra("quotas", "set", "demo", "--user-rpm", "5", "--user-tpm", "100"))
    ok(orchestra("quotas", "set", "demo", "--user-rpm", "0"))
    assert _user_limits(orchestra, "show", "demo") == {**USER_UNLIMITED, "user_tpm": 100}


@pytest.mark.parametrize("option", ["--user-rpm", "--user-budget-usd-month"])
def test_negative_per_user_values_are_refused(
    orchestra: Orchestra, demo: None, option: str
) -> None:
    fails(orchestra("quotas", "set", "demo", option, "-1"), 2, f"{option} cannot be negative.")
    assert _user_limits(orchestra, "show", "demo") == USER_UNLIMITED
