"""Gateways that hostile upstreams answer: one on SQLite for the session, one on PostgreSQL for
the cases whose defect is PostgreSQL's (its columns had 32 bits).

The upstreams are raw servers (tests/gateway/upstream/raw_server.py) scripted per test; the
calling, reading and record helpers are the fault suite's (tests/gateway/resilience), imported,
not copied. Timeouts are short so that a silent upstream ends within a second.
"""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import pytest

from tests.conftest import POSTGRES_URL, PostgresSchema
from tests.gateway.http.conftest import Gateway, running_gateway
from tests.gateway.resilience.conftest import Tenants, init_home

FIRST_TOKEN_TIMEOUT_S = 1.0
IDLE_TIMEOUT_S = 0.5

SETTINGS: dict[str, object] = {
    "first_token_timeout_s": FIRST_TOKEN_TIMEOUT_S,
    "idle_timeout_s": IDLE_TIMEOUT_S,
    "connect_timeout_s": 1.0,
}


@pytest.fixture(scope="session")
def sqlite_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    root = tmp_path_factory.mktemp("hostile")
    init_home(root / "home")
    with running_gateway(root / "home", root / "logs", name="h-gateway", **SETTINGS) as gateway:
        yield gateway


@pytest.fixture(scope="session")
def postgres_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    schema = PostgresSchema()
    anyio.run(schema.create)
    root = tmp_path_factory.mktemp("hostile-pg")
    database = {"database_url": POSTGRES_URL, "database_schema": schema.name}
    try:
        init_home(root / "home", **database)
        with running_gateway(
            root / "home", root / "logs", name="h-gateway-pg", **SETTINGS, **database
        ) as gateway:
            yield gateway
    finally:
        anyio.run(schema.drop)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_gateway(request: pytest.FixtureRequest) -> Gateway:
    """The case on each backend."""
    gateway: Gateway = request.getfixturevalue(f"{request.param}_gateway")
    return gateway


def tenants_on(gateway: Gateway, request: pytest.FixtureRequest) -> Tenants:
    slug = "".join(c if c.isalnum() else "-" for c in request.node.name.lower())
    return Tenants(gateway, None, slug.removeprefix("test-")[:20].strip("-") or "app")
