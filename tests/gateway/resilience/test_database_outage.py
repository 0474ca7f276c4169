"""The database briefly unavailable during a load run: answers per policy, no lost record.

A dedicated gateway on PostgreSQL reaches the database through a TCP relay run by the test
(as tests/gateway/http/test_status.py does); stopping the relay closes the listener and every
relayed connection, which is what a database restart looks like to the gateway. Requests are
sent before, during and after the outage; afterwards every one of them must have exactly one
interaction record (read straight from PostgreSQL).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import asyncpg  # type: ignore[import-untyped]
import httpx
import pytest

from tests.conftest import PostgresSchema
from tests.gateway.http.conftest import Fake, Gateway, gateway_via_proxy, poll
from tests.gateway.resilience.conftest import Tenants, call
from tests.support.databases import POSTGRES_DSN
from tests.support.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

WORKERS = 4
OUTAGE_S = 2.0


@dataclass
class Sent:
    phase: str
    request_id: str
    outcome: str


@dataclass
class Load:
    phase: str = "before"
    sent: list[Sent] = field(default_factory=list)
    running: bool = True


async def _worker(http: httpx.AsyncClient, app: object, load: Load, index: int) -> None:
    from tests.gateway.http.conftest import AppHandle

    assert isinstance(app, AppHandle)
    n = 0
    while load.running:
        n += 1
        phase = load.phase
        stream = (index + n) % 2 == 0
        body = {"prompt": f"load {index}-{n}", "stream": stream}
        try:
            ended = await call(http, app, body)
        except httpx.TransportError as exc:  # the gateway must answer: count it as a failure
            load.sent.append(Sent(phase, f"transport-{index}-{n}", type(exc).__name__))
            continue
        try:
            outcome = ended.assert_typed_end()
        except AssertionError as exc:
            outcome = f"untyped: {exc}"
        load.sent.append(Sent(phase, ended.request_id, outcome))
        await anyio.sleep(0.02)


async def _records(schema: str) -> Counter[str]:
    connection = await asyncpg.connect(POSTGRES_DSN)
    try:
        rows = await connection.fetch(f'SELECT request_id FROM "{schema}".request_logs')  # noqa: S608
    finally:
        await connection.close()
    return Counter(row["request_id"] for row in rows)


async def test_a_database_outage_during_load_loses_and_duplicates_no_record(
    tmp_path: Path, postgres_schema: PostgresSchema, fake: Fake
) -> None:
    load = Load()
    async with gateway_via_proxy(
        tmp_path,
        postgres_schema,
        name="pg-outage-gateway",
        auth_cache_ttl_s=60,  # tokens seen before the outage stay trusted through it
        upstream_attempts=1,
        first_token_timeout_s=10,  # not a timeout test: a loaded machine must not matter
    ) as (gateway, relay):
        await _run(gateway, relay, load, fake)

    wanted = [s.request_id for s in load.sent]
    by_phase = Counter((s.phase, s.outcome) for s in load.sent)
    assert {p for p, _ in by_phase} == {"before", "outage", "after"}, by_phase
    stored = await _records(postgres_schema.name)
    missing = [rid for rid in wanted if stored[rid] == 0]
    duplicated = [rid for rid in wanted if stored[rid] > 1]
    summary = f"answers by phase: {dict(by_phase)}; missing {len(missing)}, dup {len(duplicated)}"
    print(summary)  # noqa: T201
    # Answered per policy: a typed answer every time, never an untyped failure.
    for sent in load.sent:
        assert sent.outcome in ("done", "json", "http:503:storage_unavailable"), (
            sent,
            summary,
        )
    assert all(s.outcome in ("done", "json") for s in load.sent if s.phase != "outage"), summary
    assert by_phase[("outage", "http:503:storage_unavailable")] >= 3, summary
    assert not missing, f"{len(missing)} requests have no record: {summary}"
    assert not duplicated, f"{len(duplicated)} requests have several records: {summary}"


async def _run(gateway: Gateway, relay: TcpProxy, load: Load, fake: Fake) -> None:
    tenants = Tenants(gateway, fake, "pg-outage")
    app = await tenants.add()
    unseen = await tenants.add()  # its token is first presented during the outage
    async with gateway.client(timeout=15) as http:
        warm = await call(http, app, {"prompt": "warm up the auth cache"})
        assert warm.assert_typed_end() == "done"
        load.sent.append(Sent("before", warm.request_id, "done"))
        async with anyio.create_task_group() as workers:
            for index in range(WORKERS):
                workers.start_soon(_worker, http, app, load, index)
            await anyio.sleep(0.5)

            relay.stop()  # the database goes away
            load.phase = "outage"
            down = await poll(lambda: http.get("/status"), lambda r: r.status_code == 503)
            assert down.json()["checks"]["database"] == "error"
            started = time.monotonic()
            for _ in range(3):
                # A token never seen before cannot be checked: a typed 503, recorded later.
                refused = await call(http, unseen, {"prompt": "who am I?"})
                load.sent.append(Sent("outage", refused.request_id, refused.assert_typed_end()))
            await anyio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - started)))

            await relay.start()  # it is back, same address
            up = await poll(lambda: http.get("/status"), lambda r: r.status_code == 200, timeout=10)
            assert up.json()["checks"]["database"] == "ok"
            load.phase = "after"
            await anyio.sleep(1.0)
            load.running = False
        # The records buffered during the outage reach the database without a restart.
        wanted = {s.request_id for s in load.sent}
        await poll(
            lambda: _stored_ids(gateway),
            lambda ids: wanted <= ids,
            timeout=10,
            interval=0.2,
        )


async def _stored_ids(gateway: Gateway) -> set[str]:
    assert gateway.database_schema is not None
    return set(await _records(gateway.database_schema))
