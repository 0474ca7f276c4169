"""SSRF at registration: `orchestra apps add/update --base-url`, as an operator runs them.

The CLI runs in-process against the resilience gateway's database. Nothing here connects
anywhere: registering a base URL does no I/O but the database; the connect-time half of the
rules is unit-tested in tests/gateway/upstream/test_egress.py.
"""

from __future__ import annotations

import json
import secrets

import pytest

from tests.gateway.resilience.conftest import Processes, orchestra_cli

ALLOWED_HOSTS = json.dumps(["llm.internal", "10.9.8.7"])  # ORCHESTRA_ALLOWED_UPSTREAM_HOSTS

REFUSED = [
    ("http://169.254.169.254/latest/meta-data", "https"),
    ("https://169.254.169.254/v1", "private"),
    ("https://10.0.0.5/v1", "private"),
    ("https://192.168.1.10:8443/v1", "private"),
    ("https://100.64.0.1/v1", "private"),
    ("https://[fd00:ec2::254]/v1", "private"),
    ("https://[::ffff:169.254.169.254]/v1", "private"),
    ("http://api.openai.com/v1", "https"),
    ("http://llm.internal/v1", "https"),  # allowed only when configured
]


def name() -> str:
    return f"ssrf-{secrets.token_hex(4)}"


@pytest.fixture(scope="module")
def existing(processes: Processes) -> str:
    app = name()
    created = orchestra_cli(
        processes.gateway, "apps", "add", app, "--base-url", "http://127.0.0.1:9/v1"
    )
    assert created.code == 0, created.err
    return app


@pytest.mark.parametrize(("url", "problem"), REFUSED)
def test_add_and_update_refuse_ssrf_base_urls(
    processes: Processes, existing: str, url: str, problem: str
) -> None:
    gateway = processes.gateway
    added = orchestra_cli(gateway, "apps", "add", name(), "--base-url", url)
    updated = orchestra_cli(gateway, "apps", "update", existing, "--base-url", url)
    for run in (added, updated):
        assert run.code != 0, (url, run.out)
        assert problem in run.err, (url, run.err)
        assert "Traceback" not in run.err + run.out
    shown = orchestra_cli(gateway, "apps", "show", existing, "--json")
    assert json.loads(shown.out)["base_url"] == "http://127.0.0.1:9/v1"  # unchanged


@pytest.mark.parametrize(
    "url", ["http://llm.internal:8000/v1", "http://LLM.INTERNAL/v1", "https://10.9.8.7/v1"]
)
def test_allowed_upstream_hosts_are_accepted_over_http_and_private(
    processes: Processes, url: str
) -> None:
    run = orchestra_cli(
        processes.gateway,
        "apps",
        "add",
        name(),
        "--base-url",
        url,
        "--json",
        allowed_upstream_hosts=ALLOWED_HOSTS,
    )
    assert run.code == 0, (url, run.err)
    assert json.loads(run.out)["app"]["base_url"] == url


def test_the_allowed_list_opens_exactly_its_hosts(processes: Processes) -> None:
    run = orchestra_cli(
        processes.gateway,
        "apps",
        "add",
        name(),
        "--base-url",
        "https://10.9.8.8/v1",
        allowed_upstream_hosts=ALLOWED_HOSTS,
    )
    assert run.code != 0 and "private" in run.err


def test_credentials_in_a_base_url_are_refused_and_never_echoed(processes: Processes) -> None:
    secret = "sk-in-the-url-" + secrets.token_hex(8)
    run = orchestra_cli(
        processes.gateway,
        "apps",
        "add",
        name(),
        "--base-url",
        f"https://user:{secret}@api.openai.com/v1",
    )
    assert run.code != 0
    assert "credentials" in run.err
    assert secret not in run.out + run.err
