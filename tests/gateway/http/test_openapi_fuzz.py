"""Schemathesis over the gateway's own /openapi.json: no 5xx, no answer the schema does not declare.

A real ``orchestra serve`` with the fast fake behind it (the session's on SQLite, and one on
PostgreSQL, which refuses more: NUL characters, over-long strings) is fuzzed once per credential:
a valid app token, none, a wrong one, the admin token. Every operation gets the schema's
examples, Schemathesis' coverage cases (boundaries, missing and invalid values, other content
types) and generated requests, valid and not. Each answer must be no 5xx, with a declared
status and content type, and a body (each SSE event too) that matches the declared schema.
Deterministic (``derandomize``) and bounded (``MAX_EXAMPLES``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from gateway.security.keyring import generate_master_key
from gateway.services import apps as app_service
from gateway.storage.database import Database
from tests.conftest import POSTGRES_URL, PostgresSchema
from tests.gateway.http.conftest import (
    ADMIN_TOKEN,
    TLS,
    Apps,
    Fake,
    Gateway,
    running_gateway,
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
MAX_EXAMPLES = 10

# ?follow=true streams the records and never ends (tests/gateway/http/test_logs.py reads it).
_FOLLOW = (True, "true", "1", 1)

CREDENTIALS = ("app-token", "no-token", "wrong-token", "admin-token")

# Mixed into every generated string and integer: values that broke the gateway once (NUL on
# PostgreSQL, digits int() refuses, dates out of datetime's range, integers past 64 bits).
HOSTILE = [
    "\x00",
    "a\x00b",
    "\u00b2",  # superscript two: str.isdigit() says yes, int() says no
    "9" * 5000,
    "99999999999999999999999",
    "99999999999d",
    "999999d",
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-01:00",
    "x" * 3000,
    "\U0001f600",
    "'; DROP TABLE request_logs; --",
    2**63,
    -(2**63) - 1,
    10**30,
]
HOSTILE_PROBABILITY = 0.2


def schemathesis_config() -> schemathesis.Config:
    binding = {"dictionary": "hostile", "probability": HOSTILE_PROBABILITY}
    return schemathesis.Config.from_dict(
        {
            "dictionaries": {"hostile": {"values": HOSTILE}},
            "generation": {"dictionaries": {"string": binding, "integer": binding}},
        }
    )


# --- the gateways under test ----------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    gateway: Gateway
    app_token: str
    schema: dict[str, Any]

    def headers(self, credential: str) -> dict[str, str]:
        token = {
            "app-token": self.app_token,
            "no-token": None,
            "wrong-token": "orc_" + "x" * 43,  # well-formed, so it is looked up
            "admin-token": ADMIN_TOKEN,
        }[credential]
        return {} if token is None else {"Authorization": f"Bearer {token}"}


def served_schema(gateway: Gateway) -> dict[str, Any]:
    response = httpx.get(f"{gateway.url}/openapi.json", timeout=10, verify=TLS)
    response.raise_for_status()
    document: dict[str, Any] = response.json()
    return document


def new_app(gateway: Gateway, fake: Fake, issued: set[str], *, workflow: str) -> str:
    """A new app on ``fake`` answering through ``workflow``, logging prompts and answers (so
    that the fuzzed texts reach the database too); its token."""

    async def register() -> str:
        app = await Apps(gateway, fake, issued, prefix="fuzz").add(log_content="full")
        changes = app_service.AppChanges(workflow=workflow)
        await gateway.with_database(lambda db: app_service.update_app(db, app.name, changes))
        return app.token

    return anyio.run(register)


@pytest.fixture(scope="module")
def sqlite_target(gateway: Gateway, fake: Fake, issued_secrets: set[str]) -> Target:
    """The session's gateway (SQLite), with an app on the direct workflow."""
    token = new_app(gateway, fake, issued_secrets, workflow="direct")
    return Target(gateway, token, served_schema(gateway))


@pytest.fixture(scope="module")
def postgres_target(
    tmp_path_factory: pytest.TempPathFactory, fake: Fake, issued_secrets: set[str]
) -> Iterator[Target]:
    """A gateway on PostgreSQL, with an app on the conversation workflow (its checkpointer)."""
    schema = PostgresSchema()
    anyio.run(schema.create)
    root = tmp_path_factory.mktemp("fuzz-pg")
    try:
        anyio.run(_migrate, schema.name)
        with running_gateway(
            root / "home",
            root / "logs",
            name="fuzz-pg",
            database_url=POSTGRES_URL,
            database_schema=schema.name,
            master_key=generate_master_key(),
        ) as gateway:
            token = new_app(gateway, fake, issued_secrets, workflow="conversation")
            yield Target(gateway, token, served_schema(gateway))
    finally:
        anyio.run(schema.drop)


async def _migrate(schema: str) -> None:
    db = Database.open(POSTGRES_URL, schema=schema)
    try:
        await db.upgrade()
    finally:
        await db.close()


@pytest.fixture(
    params=[
        *(("sqlite", c) for c in CREDENTIALS),
        *(pytest.param(("postgres", c), marks=pytest.mark.postgres) for c in CREDENTIALS),
    ],
    ids=lambda param: "-".join(param),
)
def target(request: pytest.FixtureRequest) -> tuple[Target, str]:
    backend, credential = request.param
    return request.getfixturevalue(f"{backend}_target"), credential


@pytest.fixture
def auth_headers(target: tuple[Target, str]) -> dict[str, str]:
    found, credential = target
    return found.headers(credential)


@pytest.fixture
def api_schema(target: tuple[Target, str]) -> schemathesis.BaseSchema:
    found, _ = target
    schema = schemathesis.openapi.from_dict(found.schema, config=schemathesis_config())
    schema.config.update(base_url=found.gateway.url)
    schema.config.generation.update(
        modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], deterministic=True
    )
    return schema


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    # Schemathesis 4.32's fixture loader reads and writes Node._nodeid, which pytest 9.2 no
    # longer has; it only labels its reports with it.
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


# --- the tests ------------------------------------------------------------------------------

fuzzed = schemathesis.pytest.from_fixture("api_schema")


@fuzzed.parametrize()
@settings(
    derandomize=True,
    database=None,
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_gateway_answers_as_its_schema_declares(
    case: schemathesis.Case[Any], auth_headers: dict[str, str]
) -> None:
    query = case.query
    if case.operation.path == "/logs" and query is not None and query.get("follow") in _FOLLOW:
        del query["follow"]
    case.call_and_validate(headers=auth_headers, checks=CHECKS, timeout=15)
