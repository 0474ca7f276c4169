"""Quota counters shared by every replica, in Redis, with atomic server-side Lua scripts.

The scripts implement exactly the semantics of gateway.core.quota_policy (the same as the
in-memory backend; the property tests check both against one reference model). Time comes
from the caller (the replicas' clocks, NTP-synchronised); a skew of a few milliseconds only
moves a window edge by that much.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.core.quota_policy import (
    SCOPE_USER,
    Calendar,
    Decision,
    Limits,
    LimitState,
    Reservation,
    Snapshot,
    current_states,
    decide,
    decide_with_user,
)
from gateway.storage.counters import redis_lua
from gateway.storage.counters.protocol import CountersUnavailable
from gateway.storage.redis_scripts import run_script_pipeline


def _lease_keys(prefix: str, app_id: str) -> list[str]:
    base = f"{prefix}{{{app_id}}}"
    return [f"{base}:leases", f"{base}:expiries", f"{base}:leasesum"]


def _keys(prefix: str, app_id: str, calendar: Calendar) -> list[str]:
    base = f"{prefix}{{{app_id}}}"
    return [
        f"{base}:requests",
        f"{base}:tokens",
        f"{base}:amounts",
        f"{base}:tokensum",
        *_lease_keys(prefix, app_id),
        f"{base}:day:{calendar.day}",
        f"{base}:month:{calendar.month}",
    ]


def _user_base(prefix: str, app_id: str, user: str) -> str:
    # In the app's hash slot; the length makes the key unambiguous whatever the id holds.
    return f"{prefix}{{{app_id}}}:u{len(user)}:{user}"


def _user_keys(prefix: str, app_id: str, user: str, calendar: Calendar) -> list[str]:
    base = _user_base(prefix, app_id, user)
    return [
        f"{base}:requests",
        f"{base}:tokens",
        f"{base}:amounts",
        f"{base}:tokensum",
        f"{base}:leases",
        f"{base}:leasesum",
        f"{base}:day:{calendar.day}",
        f"{base}:month:{calendar.month}",
    ]


def _user_lease_keys(prefix: str, app_id: str, user: str) -> list[str]:
    base = _user_base(prefix, app_id, user)
    return [f"{base}:leases", f"{base}:leasesum"]


def _limit_args(limits: Limits) -> list[int]:
    return [
        _arg(limits.rpm),
        _arg(limits.tpm),
        _arg(limits.tokens_per_day),
        _arg(limits.max_concurrent),
        _arg(limits.budget_micros_month),
    ]


def _snapshot(values: Sequence[Any]) -> Snapshot:
    nreq, wtokens, nlease, dayused, monthused, oldreq, oldtok = values
    return Snapshot(
        requests=int(float(nreq)),
        oldest_request_at=_float_or_none(oldreq),
        window_tokens=int(float(wtokens)),
        oldest_token_at=_float_or_none(oldtok),
        leases=int(float(nlease)),
        day_used=int(float(dayused)),
        month_used=int(float(monthused)),
    )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _arg(value: int | None) -> int:
    return -1 if value is None else value


def _float_or_none(value: Any) -> float | None:
    text = value.decode() if isinstance(value, bytes) else str(value)
    return float(text) if text else None


class RedisCounters:
    def __init__(self, redis: Redis, *, prefix: str = "orc:q:") -> None:
        self._redis = redis
        self._prefix = prefix
        self._reserve = redis.register_script(redis_lua.RESERVE)
        self._settle = redis.register_script(redis_lua.SETTLE)
        self._renew = redis.register_script(redis_lua.RENEW)

    async def reserve(
        self, limits: Limits, reservation: Reservation, user_limits: Limits | None = None
    ) -> Decision:
        r = reservation
        if user_limits is not None and r.user is not None:
            return await self._reserve_with_user(limits, user_limits, r, r.user)
        args = [
            repr(r.now),
            repr(r.ttl),
            r.id,
            r.tokens,
            r.cost_micros,
            _arg(limits.rpm),
            _arg(limits.tpm),
            _arg(limits.tokens_per_day),
            _arg(limits.max_concurrent),
            _arg(limits.budget_micros_month),
        ]
        result = await self._call(self._reserve, _keys(self._prefix, r.app_id, r.calendar), args)
        refused_raw, nreq, wtokens, nlease, dayused, monthused, oldreq, oldtok, tpm_retry = result
        refused = refused_raw.decode() if isinstance(refused_raw, bytes) else str(refused_raw)
        snap = Snapshot(
            requests=int(float(nreq)),
            oldest_request_at=_float_or_none(oldreq),
            window_tokens=int(float(wtokens)),
            oldest_token_at=_float_or_none(oldtok),
            leases=int(float(nlease)),
            day_used=int(float(dayused)),
            month_used=int(float(monthused)),
        )
        return decide(limits, r, snap, refused or None, float(tpm_retry))

    async def _with_user(
        self, mode: str, limits: Limits, user_limits: Limits, r: Reservation, user: str
    ) -> list[Any]:
        keys = [
            *_keys(self._prefix, r.app_id, r.calendar),
            *_user_keys(self._prefix, r.app_id, user, r.calendar),
        ]
        args: list[Any] = [repr(r.now), repr(r.ttl), r.id, r.tokens, r.cost_micros]
        args += [*_limit_args(limits), mode, *_limit_args(user_limits)]
        result: list[Any] = await self._call(self._reserve, keys, args)
        return result

    async def _reserve_with_user(
        self, limits: Limits, user_limits: Limits, r: Reservation, user: str
    ) -> Decision:
        result = await self._with_user("reserve", limits, user_limits, r, user)
        refused, scope = _text(result[0]) or None, _text(result[9])
        snaps = (_snapshot(result[1:8]), _snapshot(result[10:17]))
        split = (refused, None) if scope != SCOPE_USER else (None, refused)
        return decide_with_user(limits, user_limits, r, snaps, split, float(result[8]))

    async def remaining(
        self, limits: Limits, reservation: Reservation, user_limits: Limits | None = None
    ) -> tuple[LimitState, ...]:
        r = reservation
        if user_limits is not None and r.user is not None:
            result = await self._with_user("peek", limits, user_limits, r, r.user)
            return current_states(
                limits, user_limits, r, _snapshot(result[1:8]), _snapshot(result[10:17])
            )
        args = [repr(r.now), repr(r.ttl), r.id, 0, 0, *_limit_args(limits), "peek"]
        result = await self._call(self._reserve, _keys(self._prefix, r.app_id, r.calendar), args)
        return current_states(limits, None, r, _snapshot(result[1:8]), None)

    async def settle(
        self,
        app_id: str,
        reservation_id: str,
        *,
        tokens: int,
        cost_micros: int,
        now: float,
        calendar: Calendar,
        user: str | None = None,
    ) -> None:
        keys = _keys(self._prefix, app_id, calendar)
        if user is not None:
            keys += _user_keys(self._prefix, app_id, user, calendar)
        await self._call(self._settle, keys, [repr(now), reservation_id, tokens, cost_micros])

    async def renew(
        self,
        leases: Mapping[str, Sequence[str]],
        *,
        now: float,
        expires: float,
        users: Mapping[str, Collection[str]] | None = None,
    ) -> int:
        """One pipelined round trip: a script call per app (an app's keys, and its users', share
        one slot). A user's share is live while the app's lease is: the users' lease keys are
        only kept as long."""
        users = users or {}
        batch = [(app_id, ids, users.get(app_id, ())) for app_id, ids in leases.items() if ids]
        if not batch:
            return 0
        times = (repr(now), repr(expires))
        try:
            results = await run_script_pipeline(
                self._redis, redis_lua.RENEW, lambda pipe: self._queue_renew(pipe, batch, times)
            )
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise CountersUnavailable(type(exc).__name__) from None
        except RedisError as exc:
            raise CountersUnavailable(f"redis error: {type(exc).__name__}") from None
        failed = next((r for r in results if isinstance(r, Exception)), None)
        if failed is not None:
            raise CountersUnavailable(f"redis error: {type(failed).__name__}")
        return sum(int(r) for r in results)

    def _queue_renew(
        self,
        pipe: Pipeline,
        batch: list[tuple[str, Sequence[str], Collection[str]]],
        times: tuple[str, str],
    ) -> None:
        for app_id, ids, holders in batch:
            keys = _lease_keys(self._prefix, app_id)
            for user in holders:
                keys += _user_lease_keys(self._prefix, app_id, user)
            pipe.evalsha(self._renew.sha, len(keys), *keys, *times, *ids)

    async def _call(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            return await script(keys=keys, args=args)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise CountersUnavailable(type(exc).__name__) from None
        except RedisError as exc:
            raise CountersUnavailable(f"redis error: {type(exc).__name__}") from None

    async def aclose(self) -> None:
        return None  # the Redis client belongs to the lifespan
