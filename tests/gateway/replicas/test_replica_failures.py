"""Failures: a replica killed with a reservation in flight, Redis stopped mid-run, and a
multi-worker server refused without Redis."""

from __future__ import annotations

import secrets
import time

import anyio
import httpx
import pytest

from gateway.services.views import QuotaLimits
from tests.gateway.replicas.conftest import (
    ORCHESTRA,
    RESERVATION_TTL_S,
    Cluster,
    Outcome,
    ask,
    child_env,
    poll,
    wait_http_async,
)

pytestmark = pytest.mark.anyio


async def test_a_killed_replica_leaks_no_reservation(cluster: Cluster) -> None:
    """SIGKILL a replica mid-answer: its lease blocks the app until the TTL, then expires."""
    assert cluster.spare is not None
    await wait_http_async([cluster.spare], "/status")
    victim = cluster.spare
    app = await cluster.add_app("killed", QuotaLimits(max_concurrent=1))
    others = cluster.spread()
    async with others:
        streaming = anyio.Event()
        killed_at = 0.0

        async def doomed_answer() -> None:
            async def first_delta() -> None:
                streaming.set()

            async with httpx.AsyncClient(base_url=victim.url, timeout=30) as http:
                # 30 s of answer: it is still streaming when its replica dies.
                prompt = f"doomed {secrets.token_hex(3)} [token-ms:100] [tokens:300]"
                try:
                    await ask(http, app, prompt, on_first_delta=first_delta)
                except httpx.HTTPError:
                    pass  # the connection dies with the replica
                else:
                    raise AssertionError("the answer ended although its replica was killed")

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(doomed_answer)
            with anyio.fail_after(10):
                await streaming.wait()
            # Longer than the lease's TTL: the streaming replica renews it (every ttl / 3), so
            # the other replicas still see the slot taken.
            await anyio.sleep(RESERVATION_TTL_S + 1)
            held = await ask(others.next(), app, "probe [tokens:1]", stream=False)
            assert (held.status, held.error_code) == (429, "quota_exceeded"), held.body
            await anyio.to_thread.run_sync(victim.kill)
            killed_at = time.monotonic()

        # Right after the kill the lease still holds the only slot, on every replica...
        refusals: list[Outcome] = []
        admitted: Outcome | None = None
        deadline = killed_at + RESERVATION_TTL_S + 5
        while time.monotonic() < deadline:
            outcome = await ask(others.next(), app, "probe [tokens:1]", stream=False)
            if outcome.status == 200:
                admitted = outcome
                break
            assert (outcome.status, outcome.error_code) == (429, "quota_exceeded"), outcome.body
            refusals.append(outcome)
            await anyio.sleep(0.2)
        recovered_after = time.monotonic() - killed_at
        assert admitted is not None, f"still refused {recovered_after:.1f} s after the kill"
        assert len(refusals) >= 2, refusals
        assert len({o.replica for o in refusals}) >= 2
        # ...then the lease expired by itself (it was last renewed before the kill).
        assert recovered_after <= RESERVATION_TTL_S + 2.5, recovered_after
        # No leak: the slot is free again after each answer, on every replica.
        for _ in range(3):
            outcome = await ask(others.next(), app, "probe [tokens:1]", stream=False)
            assert outcome.status == 200, outcome.body


async def test_redis_stopped_mid_run_fails_open_for_rpm_closed_for_tpm_then_recovers(
    cluster: Cluster,
) -> None:
    await wait_http_async(cluster.pair, "/status")
    requests_only = await cluster.add_app("rpm-only", QuotaLimits(rpm=1000))
    tokens = await cluster.add_app("tpm", QuotaLimits(tpm=100_000))
    pair = cluster.spread(cluster.pair)
    async with pair:

        async def both_served() -> None:
            for app in (requests_only, tokens, requests_only, tokens):
                outcome = await ask(pair.next(), app, "hello [tokens:2]", stream=False)
                assert outcome.status == 200, outcome.body
                assert outcome.headers["RateLimit-Limit"] in ("1000", "100000")

        await both_served()
        cluster.own_redis.stop()
        try:
            for _ in range(4):  # both replicas, twice
                started = time.monotonic()
                served = await ask(pair.next(), requests_only, "hi [tokens:2]", stream=False)
                assert served.status == 200, served.body  # fail_open: served, not counted
                assert "RateLimit-Limit" not in served.headers
                assert time.monotonic() - started < 5
                refused = await ask(pair.next(), tokens, "hi [tokens:2]", stream=False)
                assert (refused.status, refused.error_code) == (503, "quota_unavailable")
                assert refused.headers["Retry-After"] == "1"
                streamed = await ask(pair.next(), tokens, "hi [tokens:2]", stream=True)
                assert (streamed.status, streamed.error_code) == (503, "quota_unavailable")
        finally:
            cluster.own_redis.start()  # same port, empty (no persistence)

        async def recovered() -> bool:
            try:
                await both_served()
            except AssertionError:
                return False
            return True

        await poll(recovered, bool, timeout=10, interval=0.2)
        # Each replica logged the decisions it took without the counters.
        for replica in cluster.pair:
            output = replica.output()
            assert "quota counters unavailable; failing open" in output
            assert "quota counters unavailable; failing closed" in output
        # Limits are counted again: an rpm of 2 refuses the third request.
        strict = await cluster.add_app("rpm-after", QuotaLimits(rpm=2))
        statuses = [
            (await ask(pair.next(), strict, "x [tokens:1]", stream=False)).status for _ in range(3)
        ]
        assert statuses == [200, 200, 429], statuses


async def test_several_workers_without_redis_are_refused(cluster: Cluster) -> None:
    settings = {k: v for k, v in cluster.settings.items() if k != "redis_url"}
    result = await anyio.run_process(
        [str(ORCHESTRA), "serve", "--workers", "2", "--port", "9"],
        env=child_env(settings),
        check=False,
    )
    output = (result.stdout + result.stderr).decode()
    assert result.returncode != 0, output
    assert "ORCHESTRA_REDIS_URL" in output, output
    assert "--workers 2" in output, output
    assert "Traceback" not in output, output


def metric(exposition: str, name: str, labels: str) -> float:
    """The value of one sample in a Prometheus exposition (0 when it is absent)."""
    prefix = f"{name}{{{labels}}} "
    for line in exposition.splitlines():
        if line.startswith(prefix):
            return float(line.removeprefix(prefix))
    return 0.0


async def test_decisions_taken_while_redis_is_down_are_counted_in_metrics(
    cluster: Cluster,
) -> None:
    """Issue 4: a fail policy that acts is "logged and counted in metrics"."""
    await wait_http_async(cluster.pair, "/status")
    requests_only = await cluster.add_app("rpm-metric", QuotaLimits(rpm=1000))
    tokens = await cluster.add_app("tpm-metric", QuotaLimits(tpm=100_000))
    pair = cluster.spread(cluster.pair)
    async with pair:
        cluster.own_redis.stop()
        try:
            for client in pair.clients:  # one of each decision on both replicas
                served = await ask(client, requests_only, "hi [tokens:2]", stream=False)
                assert served.status == 200, served.body
                refused = await ask(client, tokens, "hi [tokens:2]", stream=False)
                assert refused.status == 503, refused.body
        finally:
            cluster.own_redis.start()
        for client in pair.clients:
            exposition = (await client.get("/metrics")).text
            name = "orchestra_quota_counters_unavailable_total"
            assert metric(exposition, name, 'policy="fail_open"') >= 1, exposition[-3000:]
            assert metric(exposition, name, 'policy="fail_closed"') >= 1
