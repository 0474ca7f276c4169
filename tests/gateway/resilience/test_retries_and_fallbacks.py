"""Before the first byte: fallback models, a 429 storm with Retry-After, bounded 5xx retries.

Real processes: the fakes and the resilience gateway of conftest.py (3 attempts, a 4 s
deadline, a circuit that opens after 3 failures), plus raw servers run in the test.
"""

from __future__ import annotations

import json
import secrets
import time

import anyio
import httpx
import pytest

from tests.gateway.http.conftest import Fake, Gateway, poll
from tests.gateway.resilience.conftest import (
    ATTEMPTS,
    RETRY_DEADLINE_S,
    Ended,
    Tenants,
    acli,
    assert_reservation_released,
    call,
    circuits,
    quota_limits,
    record_of,
)
from tests.gateway.upstream.raw_server import answer, raw_server

pytestmark = pytest.mark.anyio

#: Models the fake does not know (404 model_not_found), and ones it does.
MISSING, MISSING_TOO = "gpt-missing-primary", "gpt-missing-second"
KNOWN = "gpt-4o"
#: The fake's Retry-After on every 429 (gateway/fakes/errors.py).
FAKE_RETRY_AFTER_S = 1.0


def marker() -> str:
    return f"m-{secrets.token_hex(6)}"


# --- fallback models ------------------------------------------------------------------------


async def test_a_model_unknown_upstream_falls_back_in_order(
    client: httpx.AsyncClient, tenants: Tenants, fake: Fake, r_gateway: Gateway
) -> None:
    app = await tenants.add(model=MISSING)
    # Set through the CLI, as an operator would (repeatable, kept in order).
    shown = await acli(
        r_gateway,
        "apps",
        "update",
        app.name,
        "--fallback-model",
        MISSING_TOO,
        "--fallback-model",
        KNOWN,
        "--json",
    )
    assert shown.code == 0, shown.err
    assert json.loads(shown.out)["fallback_models"] == [MISSING_TOO, KNOWN]
    tag = marker()

    streamed = await call(client, app, {"prompt": f"{tag} stream"})
    assert streamed.assert_typed_end() == "done"
    assert streamed.last.json["model"] == KNOWN
    assert len(streamed.deltas) > 0

    sent = await poll(lambda: fake.requests_with(f"{tag} stream"), lambda rs: len(rs) == 3)
    assert [r["body"]["model"] for r in sent] == [MISSING, MISSING_TOO, KNOWN]

    plain = await call(client, app, {"prompt": f"{tag} json", "stream": False})
    assert plain.status == 200, plain.body
    assert plain.body["model"] == KNOWN
    sent = await fake.requests_with(f"{tag} json")
    assert [r["body"]["model"] for r in sent] == [MISSING, MISSING_TOO, KNOWN]

    record = await record_of(client, app, streamed.request_id)
    assert (record["outcome"], record["model"]) == ("completed", KNOWN)


async def test_without_a_fallback_an_unknown_model_is_a_clean_502(
    client: httpx.AsyncClient, tenants: Tenants, fake: Fake
) -> None:
    app = await tenants.add(model=MISSING)
    tag = marker()
    ended = await call(client, app, {"prompt": tag})
    assert ended.assert_typed_end() == "http:502:upstream_error"
    assert "404" in ended.body["error"]["message"]
    assert len(await fake.requests_with(tag)) == 1  # a 404 is not retried


async def test_a_fallback_answer_is_priced_as_the_model_that_answered(
    client: httpx.AsyncClient, tenants: Tenants, r_gateway: Gateway
) -> None:
    """gpt-4.1-nano (unknown at the fake) falls back to gpt-4o, 25x its price per token.

    The spend (records, `orchestra usage`, the monthly budget) must follow the model that
    produced the tokens, or a fallback to a dearer model is never paid for in the budget.
    """
    app = await tenants.add(model="gpt-4.1-nano", fallback_models=(KNOWN,))
    ended = await call(client, app, {"prompt": "price me"})
    assert ended.assert_typed_end() == "done"
    record = await record_of(client, app, ended.request_id)
    prompt, completion = record["prompt_tokens"], record["completion_tokens"]
    assert prompt > 0 and completion > 0
    usage = json.loads((await acli(r_gateway, "usage", "--app", app.name, "--json")).out)
    (row,) = usage["apps"]
    gpt_4o = (prompt * 2.50 + completion * 10.00) / 1_000_000
    assert row["cost_usd"] == pytest.approx(gpt_4o, rel=1e-6), (row, gpt_4o)


# --- a 429 storm ----------------------------------------------------------------------------


def _assert_clean_429(ended: Ended, *, openai: bool) -> None:
    assert ended.status == 429, (ended.status, ended.body, ended.names)
    assert ended.headers["retry-after"] == "1", dict(ended.headers)
    error = ended.body["error"]
    assert error["code"] == "upstream_rate_limited", error
    if openai:
        assert error["type"] == "rate_limit_error", error
    assert "Traceback" not in json.dumps(ended.body)


async def test_a_429_storm_is_retried_after_retry_after_then_answered_429(
    client: httpx.AsyncClient, tenants: Tenants, flaky: Fake
) -> None:
    app = await tenants.add(flaky)
    tag = marker()
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": ""}]}

    def v1(i: int, stream: bool) -> dict[str, object]:
        content = f"{tag} v1-{i} [fail:429]"
        return {**chat, "messages": [{"role": "user", "content": content}], "stream": stream}

    calls: list[tuple[str, dict[str, object], bool]] = [
        ("/ask", {"prompt": f"{tag} ask-{i} [fail:429]"}, False) for i in range(8)
    ]
    calls += [
        ("/ask", {"prompt": f"{tag} json-{i} [fail:429]", "stream": False}, False) for i in range(2)
    ]
    calls += [("/v1/chat/completions", v1(i, i % 2 == 0), True) for i in range(4)]
    results: list[tuple[Ended, bool]] = []

    async def one(path: str, body: dict[str, object], openai: bool) -> None:
        results.append((await call(client, app, body, path=path), openai))

    started = time.perf_counter()
    async with anyio.create_task_group() as tasks:
        for path, body, openai in calls:
            tasks.start_soon(one, path, body, openai)
    elapsed = time.perf_counter() - started

    for ended, openai in results:
        _assert_clean_429(ended, openai=openai)
        # Retry-After (1 s) honoured between the attempts: not sooner, and within the deadline.
        assert (ATTEMPTS - 1) * FAKE_RETRY_AFTER_S - 0.05 <= ended.elapsed < RETRY_DEADLINE_S + 1
    assert elapsed < RETRY_DEADLINE_S + 2
    sent = await poll(lambda: flaky.requests_with(tag), lambda rs: len(rs) >= ATTEMPTS * len(calls))
    assert len(sent) == ATTEMPTS * len(calls), "every call is tried exactly ATTEMPTS times"

    ended, _ = results[0]
    record = await record_of(client, app, ended.request_id)
    assert record["outcome"] == "upstream_error"
    assert (record["http_status"], record["error_code"]) == (429, "upstream_rate_limited")


async def test_one_apps_rate_limit_does_not_open_the_circuit_for_the_others(
    client: httpx.AsyncClient, tenants: Tenants, flaky: Fake
) -> None:
    """Apps share a base URL but not a rate limit: app A's 429s must not refuse app B."""
    limited, other = await tenants.add(flaky, quota=quota_limits()), await tenants.add(flaky)
    # ATTEMPTS (3) rate-limited tries: as many as the circuit's failure threshold.
    ended = await call(client, limited, {"prompt": "[fail:429]", "stream": False})
    assert ended.status == 429, ended.body
    assert (await circuits(client)).get(flaky.base_url, "closed") == "closed"
    fine = await call(client, other, {"prompt": "hello from another app"})
    assert fine.assert_typed_end() == "done", (fine.status, fine.body)
    # The 429's reservation was settled: the app (max_concurrent 1, one TPM slot) has room.
    await assert_reservation_released(client, limited)


# --- 5xx: bounded retries -------------------------------------------------------------------


async def test_5xx_are_retried_a_bounded_number_of_times_then_a_clean_502(
    client: httpx.AsyncClient, tenants: Tenants
) -> None:
    failing = answer(500, {"error": {"message": "boom", "type": "server_error"}})
    async with raw_server(failing) as server:
        app = await tenants.add(base_url=server.base_url, quota=quota_limits())
        ended = await call(client, app, {"prompt": "hello"})
        assert ended.assert_typed_end() == "http:502:upstream_error"
        assert len(server.requests) == ATTEMPTS
        assert ended.elapsed < RETRY_DEADLINE_S
        assert all(r.path == "/v1/chat/completions" for r in server.requests)
        record = await record_of(client, app, ended.request_id)
        assert (record["outcome"], record["error_code"]) == ("upstream_error", "upstream_error")
        assert record["completion_tokens"] == 0
    # The same base URL is now open-circuited: the quota must still have been released.
    await poll(lambda: circuits(client), lambda c: c.get(server.base_url) == "open")
