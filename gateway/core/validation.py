"""Checks on what an operator types: app names, browser origins, upstream URLs."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import SplitResult, urlsplit

from gateway.core.egress import check_base_url
from gateway.core.errors import InvalidRequest

_APP_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_LOG_CONTENT = ("metadata", "full")
#: The workflows an app can be bound to (each defined in gateway/flows, "direct" = no graph).
WORKFLOWS = ("direct", "conversation", "moderated")


def app_name(name: str) -> str:
    if not _APP_NAME.match(name):
        raise InvalidRequest(
            f"Invalid app name {name!r}: use 1-63 lowercase letters, digits, '-' or '_', "
            "starting with a letter or digit."
        )
    return name


def _split(value: str, problem: str) -> SplitResult:
    try:
        return urlsplit(value)
    except ValueError:  # e.g. "http://[not-an-ipv6]"
        raise InvalidRequest(problem) from None


def origin(value: str) -> str:
    """A browser origin: scheme://host[:port], nothing else (``*`` means any origin)."""
    if value == "*":
        return value
    problem = (
        f"Invalid origin {value!r}: expected scheme://host[:port], e.g. http://localhost:4200."
    )
    parts = _split(value, problem)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or parts.username
    ):
        raise InvalidRequest(problem)
    try:
        port = parts.port
    except ValueError:
        raise InvalidRequest(f"Invalid origin {value!r}: bad port.") from None
    host = parts.hostname.lower()
    if ":" in host:  # an IPv6 address keeps its brackets, as in a browser's Origin header
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


def base_url(value: str, *, allowed_hosts: Iterable[str] = ()) -> str:
    """An OpenAI-compatible API root, e.g. https://api.openai.com/v1 (no trailing slash kept)."""
    shown = "" if "@" in value else f" {value!r}"  # never echo credentials put in the URL
    problem = (
        f"Invalid base URL{shown}: expected http(s)://host[:port][/path], "
        "e.g. https://api.openai.com/v1."
    )
    parts = _split(value, problem)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise InvalidRequest(problem)
    if parts.username or parts.password:
        raise InvalidRequest("Invalid base URL: credentials do not belong in the URL.")
    try:
        _ = parts.port
    except ValueError:
        raise InvalidRequest(f"Invalid base URL{shown}: bad port.") from None
    check_base_url(parts.scheme, parts.hostname, allowed_hosts)
    return value.rstrip("/")


def log_content(value: str) -> str:
    if value not in _LOG_CONTENT:
        raise InvalidRequest(f"Invalid log content {value!r}: use 'metadata' or 'full'.")
    return value


def workflow(value: str) -> str:
    if value not in WORKFLOWS:
        raise InvalidRequest(f"Unknown workflow {value!r}: use one of {', '.join(WORKFLOWS)}.")
    return value


def positive(value: int | float | None, what: str) -> None:
    if value is not None and value <= 0:
        raise InvalidRequest(f"{what} must be greater than zero (got {value}).")


def model_name(value: str) -> str:
    if not value or len(value) > 200 or any(c.isspace() for c in value):
        raise InvalidRequest(f"Invalid model name {value!r}.")
    return value
