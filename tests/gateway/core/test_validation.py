from __future__ import annotations

import pytest

from gateway.core import validation
from gateway.core.errors import InvalidRequest


@pytest.mark.parametrize("name", ["demo", "a", "my-app_2", "0app", "x" * 63])
def test_valid_app_names(name: str) -> None:
    assert validation.app_name(name) == name


@pytest.mark.parametrize("name", ["", "Demo", "-demo", "_demo", "my app", "app/1", "é", "x" * 64])
def test_invalid_app_names(name: str) -> None:
    with pytest.raises(InvalidRequest, match="Invalid app name"):
        validation.app_name(name)


@pytest.mark.parametrize(
    ("value", "normalised"),
    [
        ("http://localhost:4200", "http://localhost:4200"),
        ("http://localhost:4200/", "http://localhost:4200"),
        ("https://App.Example.COM", "https://app.example.com"),
        ("https://example.com:443", "https://example.com:443"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://[::1]:4200", "http://[::1]:4200"),
        ("http://[FE80::1]", "http://[fe80::1]"),
        ("*", "*"),
    ],
)
def test_valid_origins_are_normalised(value: str, normalised: str) -> None:
    assert validation.origin(value) == normalised


@pytest.mark.parametrize(
    "value",
    [
        "localhost:4200",
        "ftp://example.com",
        "http://",
        "https://example.com/app",
        "https://example.com?x=1",
        "https://example.com#top",
        "https://user@example.com",
        "https://example.com:99999",
        "https://example.com:port",
        "",
        "**",
        "http://[bold]x[/bold]",
        "http://[::1",
    ],
)
def test_invalid_origins(value: str) -> None:
    with pytest.raises(InvalidRequest, match="Invalid origin") as caught:
        validation.origin(value)
    assert repr(value) in caught.value.message


@pytest.mark.parametrize(
    ("value", "normalised"),
    [
        ("https://api.openai.com/v1", "https://api.openai.com/v1"),
        ("https://api.openai.com/v1/", "https://api.openai.com/v1"),
        ("http://localhost:11434/v1", "http://localhost:11434/v1"),
        ("https://my.openai.azure.com/openai/deployments/x", None),
    ],
)
def test_valid_base_urls(value: str, normalised: str | None) -> None:
    assert validation.base_url(value) == (normalised or value)


@pytest.mark.parametrize(
    "value",
    [
        "api.openai.com/v1",
        "ftp://api.openai.com",
        "https://",
        "https://api.openai.com/v1?x=1",
        "https://api.openai.com/v1#x",
        "http://localhost:70000/v1",
        "http://[not-ipv6]/v1",
        "",
    ],
)
def test_invalid_base_urls(value: str) -> None:
    with pytest.raises(InvalidRequest, match="Invalid base URL"):
        validation.base_url(value)


@pytest.mark.parametrize(
    "value",
    [
        "https://user:s3cret-pass@proxy.example.com/v1",
        "ftp://user:s3cret-pass@proxy.example.com/v1",
        "https://user:s3cret-pass@proxy.example.com:99999/v1",
        "https://user:s3cret-pass@[proxy/v1",
    ],
)
def test_a_base_url_with_credentials_is_refused_without_echoing_them(value: str) -> None:
    with pytest.raises(InvalidRequest, match="Invalid base URL") as caught:
        validation.base_url(value)
    assert "s3cret-pass" not in caught.value.message


@pytest.mark.parametrize("value", ["metadata", "full"])
def test_log_content_values(value: str) -> None:
    assert validation.log_content(value) == value


@pytest.mark.parametrize("value", ["", "none", "FULL", "all"])
def test_invalid_log_content(value: str) -> None:
    with pytest.raises(InvalidRequest, match="'metadata' or 'full'"):
        validation.log_content(value)


@pytest.mark.parametrize("value", [None, 1, 0.5, 10**9])
def test_positive_accepts_none_and_positive_numbers(value: float | None) -> None:
    validation.positive(value, "--max-output-tokens")


@pytest.mark.parametrize("value", [0, -1, -0.5])
def test_positive_refuses_zero_and_negatives_naming_the_option(value: float) -> None:
    with pytest.raises(InvalidRequest, match="--max-output-tokens must be greater than zero"):
        validation.positive(value, "--max-output-tokens")


@pytest.mark.parametrize("value", ["gpt-4o-mini", "llama3.1:8b", "org/model-name"])
def test_valid_model_names(value: str) -> None:
    assert validation.model_name(value) == value


@pytest.mark.parametrize("value", ["", "gpt 4", "gpt\t4", "x" * 201])
def test_invalid_model_names(value: str) -> None:
    with pytest.raises(InvalidRequest, match="Invalid model name"):
        validation.model_name(value)
