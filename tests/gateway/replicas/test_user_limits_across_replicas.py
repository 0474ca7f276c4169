"""Per-user limits across three replicas, with session tokens: exact under 200 concurrent
requests, one user refused at their limit while another user of the same app is served."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.gateway.replicas.conftest import AppHandle, Cluster, Spread, ask, gather, run_cli

pytestmark = pytest.mark.anyio


async def session_of(spread: Spread, app: AppHandle, user: str) -> AppHandle:
    """The app's handle with a session token of ``user`` in place of the app token."""
    response = await spread.next().post("/sessions", json={"user": user}, headers=app.auth)
    assert response.status_code == 201, response.text
    return AppHandle(app.name, app.id, response.json()["token"])


async def test_user_rpm_holds_exactly_across_replicas_without_blocking_another_user(
    cluster: Cluster, spread: Spread
) -> None:
    app = await cluster.add_app("user-rpm")
    run_cli(["quotas", "set", app.name, "--rpm", "100000", "--user-rpm", "40"], cluster.env)
    alice, bob = await session_of(spread, app, "alice"), await session_of(spread, app, "bob")
    calls = [(alice, i) for i in range(170)] + [(bob, i) for i in range(30)]
    calls = calls[::2] + calls[1::2]  # both users' requests interleaved, all at once
    outcomes = await gather(
        [ask(spread.next(), who, f"hi {i}", stream=i % 2 == 0) for who, i in calls]
    )
    by_user = {
        name: [o for (who, _), o in zip(calls, outcomes, strict=True) if who is handle]
        for name, handle in (("alice", alice), ("bob", bob))
    }
    assert Counter(o.status for o in by_user["alice"]) == {200: 40, 429: 130}
    assert Counter(o.status for o in by_user["bob"]) == {200: 30}  # never blocked by alice
    for outcome in by_user["alice"]:
        if outcome.status == 429:
            error = outcome.body["error"]
            assert (error["code"], error["scope"]) == ("quota_exceeded", "user"), error
            assert 1 <= int(outcome.headers["Retry-After"]) <= 60
            assert outcome.headers["RateLimit-Remaining"] == "0"
    for outcome in by_user["alice"] + by_user["bob"]:
        if outcome.status == 200 and outcome.events:
            assert outcome.event_names[-1] == "done", outcome.events

    # One counter per user, shared by the replicas: each remaining count handed out once.
    def remaining(name: str) -> list[int]:
        return sorted(
            int(o.headers["RateLimit-Remaining"]) for o in by_user[name] if o.status == 200
        )

    assert remaining("alice") == list(range(40))
    assert remaining("bob") == list(range(10, 40))
    assert len({o.replica for o in by_user["alice"]}) == 3

    # /status on every replica shows each user's own remaining limits.
    for client in spread.clients:
        for who, left in ((alice, 0), (bob, 10)):
            status = await client.get("/status", headers=who.auth)
            assert status.status_code == 200, status.text
            quota = status.json()["user"]["quota"]
            assert quota["limits"]["rpm"] == 40
            assert quota["remaining"]["rpm"]["remaining"] == left, (client.base_url, quota)
            assert status.json()["app"]["quota"]["remaining"]["rpm"]["remaining"] == 100_000 - 70
