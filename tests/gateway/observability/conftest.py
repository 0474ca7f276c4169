"""Real servers for the observability tests: one OpenAI fake and two gateways on one database.

``orchestra fake-openai`` and two ``orchestra serve`` processes start once for this folder, in
parallel (a gateway takes seconds of CPU to start): ``gateway`` is the one the traffic goes to
(JSON logs captured to a file, short timeouts, no retries); ``locked`` serves the same SQLite
database with ``ORCHESTRA_METRICS_TOKEN`` set, and logs at DEBUG (the logging tests use it: every
line a library logs during a request must carry the request id too). Every process started here
is stopped in a ``finally``. Apps are registered in-process with a unique name, so that every
test reads series of its own (``app`` label) and deltas are exact.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.gateway.http.conftest import (
    ADMIN_TOKEN,
    TLS,
    Apps,
    Fake,
    Gateway,
    gateway_settings,
    init_home,
    poll,
    spawn_fake,
    spawn_gateway,
)
from tests.support.processes import stopping, wait_http

METRICS_TOKEN = "mtk_" + secrets.token_urlsafe(24)

Labels = frozenset[tuple[str, str]]


@dataclass
class Stack:
    fake: Fake
    gateway: Gateway
    locked: Gateway


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("observability")
    logs, home = root / "logs", root / "home"
    with stopping() as started:
        fake = spawn_fake("fake", logs, "--tokens", "8")
        started.append(fake)
        init_home(home)
        open_settings = gateway_settings(home)
        # Not the short timeouts: its traffic must not fail (a workflow's first run loads it).
        locked_settings = gateway_settings(
            home,
            metrics_token=METRICS_TOKEN,
            log_level="DEBUG",
            first_token_timeout_s=30,
            idle_timeout_s=30,
        )
        main = spawn_gateway("gateway", open_settings, logs)
        locked = spawn_gateway("locked", locked_settings, logs)
        started += [main, locked]
        fake.wait_ready("/_fake/health")
        wait_http([main, locked], "/status")
        yield Stack(
            Fake(fake),
            Gateway.on_sqlite(main, home, open_settings),
            Gateway.on_sqlite(locked, home, locked_settings),
        )


@pytest.fixture(scope="package")
def gateway(stack: Stack) -> Gateway:
    return stack.gateway


@pytest.fixture(scope="package")
def fake(stack: Stack) -> Fake:
    return stack.fake


@pytest.fixture(scope="package")
def issued_secrets() -> set[str]:
    """Every client token and provider key handed out in this folder, and the admin token."""
    return {ADMIN_TOKEN, METRICS_TOKEN}


@pytest.fixture
def apps(
    request: pytest.FixtureRequest, gateway: Gateway, fake: Fake, issued_secrets: set[str]
) -> Apps:
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.removeprefix("test_").lower())
    return Apps(gateway, fake, issued_secrets, slug.strip("-")[:24].strip("-") or "app")


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with gateway.client() as http:
        yield http


# --- reading /metrics -----------------------------------------------------------------------


@dataclass(frozen=True)
class Scrape:
    """One /metrics exposition: every sample by (sample name, labels)."""

    samples: dict[tuple[str, Labels], float]
    text: str

    def value(self, name: str, **labels: str) -> float:
        """The sample with exactly these labels (0 when the series does not exist yet)."""
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def total(self, name: str, **labels: str) -> float:
        """The sum over every series of ``name`` whose labels include these."""
        wanted = set(labels.items())
        return sum(v for (n, ls), v in self.samples.items() if n == name and wanted <= ls)

    def series(self, name: str) -> list[dict[str, str]]:
        return [dict(ls) for (n, ls) in self.samples if n == name]

    def names(self) -> set[str]:
        return {n for n, _ in self.samples}


def parse_exposition(text: str) -> Scrape:
    samples: dict[tuple[str, Labels], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in samples, f"duplicate sample {key}"
            samples[key] = sample.value
    return Scrape(samples, text)


async def scrape(gateway: Gateway, token: str | None = None) -> Scrape:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(timeout=10, verify=TLS) as http:
        response = await http.get(f"{gateway.url}/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain"), response.headers
    return parse_exposition(response.text)


async def scrape_until(
    gateway: Gateway, done: Callable[[Scrape], bool], *, timeout: float = 5.0
) -> Scrape:
    """Scrape until ``done`` holds (a request is counted when it settles, just after its end)."""
    return await poll(lambda: scrape(gateway), done, timeout=timeout, interval=0.05)
