"""The circuit breaker of a real gateway, against one port that is closed, then answers, then fails.

The resilience gateway opens a circuit after 3 failures (one request: 3 attempts) and keeps it
open for 1 s. A raw server bound to the same port counts connections, so "fails fast" is
checked as "no connection was even attempted", not only by timing.
"""

from __future__ import annotations

import httpx
import pytest

from tests.gateway.http.conftest import free_port, poll
from tests.gateway.resilience.conftest import (
    CIRCUIT_COOLDOWN_S,
    Ended,
    Tenants,
    assert_reservation_released,
    call,
    circuits,
    quota_limits,
    record_of,
)
from tests.gateway.upstream.raw_server import answer, ok_stream, raw_server

pytestmark = pytest.mark.anyio

#: A request refused by an open circuit does no I/O upstream: it is answered at once.
FAIL_FAST_S = 1.0
OPEN_MESSAGE = "circuit breaker"


def _refused_by_the_circuit(ended: Ended) -> None:
    assert ended.assert_typed_end() == "http:503:upstream_unavailable", ended.body
    assert OPEN_MESSAGE in ended.body["error"]["message"], ended.body
    assert ended.elapsed < FAIL_FAST_S, ended.elapsed


async def test_open_fail_fast_half_open_probe_closed_then_reopened(
    client: httpx.AsyncClient, tenants: Tenants
) -> None:
    port = free_port()  # nothing listens there yet
    base_url = f"http://127.0.0.1:{port}/v1"
    app = await tenants.add(base_url=base_url, quota=quota_limits())

    # 1. Connection refused, three times: a clean 503, and the circuit is open.
    first = await call(client, app, {"prompt": "anyone there?"})
    assert first.assert_typed_end() == "http:503:upstream_unavailable"
    assert OPEN_MESSAGE not in first.body["error"]["message"]
    assert (await circuits(client))[base_url] == "open"
    record = await record_of(client, app, first.request_id)
    assert (record["outcome"], record["error_code"]) == ("upstream_error", "upstream_unavailable")

    async with raw_server(ok_stream(), port=port) as server:
        # 2. The upstream is back, but the circuit is open: refused without a connection.
        for body in ({"prompt": "now?"}, {"prompt": "now?", "stream": False}):
            _refused_by_the_circuit(await call(client, app, body))
        v1 = await call(
            client,
            app,
            {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
            path="/v1/chat/completions",
        )
        assert v1.status == 503 and v1.body["error"]["code"] == "upstream_unavailable", v1.body
        assert server.connections == 0, "an open circuit let a request through"

        # 3. After the cool-down the circuit is half-open; one probe goes through and closes it.
        await poll(
            lambda: circuits(client),
            lambda c: c.get(base_url) == "half_open",
            timeout=CIRCUIT_COOLDOWN_S + 3,
        )
        probe = await call(client, app, {"prompt": "probe"})
        assert probe.assert_typed_end() == "done", (probe.status, probe.body)
        assert len(server.requests) == 1
        assert base_url not in await circuits(client)
        again = await call(client, app, {"prompt": "closed again"})
        assert again.assert_typed_end() == "done"

    # 4. It fails again (connection refused): open; then a probe that gets a 500 reopens it.
    ended = await call(client, app, {"prompt": "gone again"})
    assert ended.status == 503
    assert (await circuits(client))[base_url] == "open"
    failing = answer(500, {"error": {"message": "still broken", "type": "server_error"}})
    async with raw_server(failing, port=port) as server:
        _refused_by_the_circuit(await call(client, app, {"prompt": "too early"}))
        await poll(
            lambda: circuits(client),
            lambda c: c.get(base_url) == "half_open",
            timeout=CIRCUIT_COOLDOWN_S + 3,
        )
        probe = await call(client, app, {"prompt": "probe that fails"})
        assert probe.status == 503, probe.body  # the 500, then the retry refused: reopened
        assert len(server.requests) == 1, "exactly one probe while half-open"
        assert (await circuits(client))[base_url] == "open"
        _refused_by_the_circuit(await call(client, app, {"prompt": "still open"}))
        assert len(server.requests) == 1
    # Every refusal above settled its reservation (max_concurrent 1 would refuse otherwise).
    async with raw_server(ok_stream(), port=port):
        await poll(
            lambda: circuits(client),
            lambda c: c.get(base_url) == "half_open",
            timeout=CIRCUIT_COOLDOWN_S + 3,
        )
        await assert_reservation_released(client, app)
