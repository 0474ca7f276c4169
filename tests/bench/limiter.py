"""The quota limiter's own cost per request: reserve + settle, next to the bare path.

    .venv/bin/python -m tests.bench.limiter [--requests 20000] [--redis redis://127.0.0.1:6379/15]

Runs in one process, one after the other, so machine noise hits all rows alike:
  bare    an app without limits (the limiter returns at once: the fast path),
  memory  rpm + tpm + tokens/day + concurrency + budget on the in-memory counters,
  redis   the same limits on Redis (one Lua call to reserve, one to settle).
Prints per-request latency percentiles (microseconds) and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid

import anyio
from redis.asyncio import Redis

from gateway.core.pricing import Price, PriceTable
from gateway.services.limiter import Limiter
from gateway.services.views import QuotaLimits
from gateway.storage.counters.memory import MemoryCounters
from gateway.storage.counters.redis import RedisCounters

_PRICES = PriceTable({"gpt-4o-mini": Price(0.15, 0.60)})
_LIMITS = QuotaLimits(
    rpm=10**9, tpm=10**12, tokens_per_day=10**13, max_concurrent=10**6, budget_usd_month=10**9
)


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e6, 1)

    return {"p50_us": at(0.50), "p90_us": at(0.90), "p99_us": at(0.99)}


async def _measure(limiter: Limiter, quota: QuotaLimits, requests: int) -> list[float]:
    app_id = f"bench-{uuid.uuid4().hex[:8]}"
    samples: list[float] = []
    for _ in range(requests):
        started = time.perf_counter()
        admission = await limiter.reserve(
            app_id, quota, model="gpt-4o-mini", prompt_tokens=20, max_tokens=50
        )
        await limiter.settle(admission, prompt_tokens=20, completion_tokens=50)
        samples.append(time.perf_counter() - started)
    return samples


async def main(requests: int, redis_url: str) -> None:
    rows: dict[str, dict[str, float]] = {}
    memory = Limiter(MemoryCounters(), _PRICES, ttl=60)
    await _measure(memory, _LIMITS, requests // 10)  # warm-up
    rows["bare"] = _percentiles(await _measure(memory, QuotaLimits(), requests))
    rows["memory"] = _percentiles(await _measure(memory, _LIMITS, requests))
    client = Redis.from_url(redis_url)
    try:
        redis = Limiter(
            RedisCounters(client, prefix=f"bench:{uuid.uuid4().hex[:6]}:"), _PRICES, ttl=60
        )
        await _measure(redis, _LIMITS, requests // 20)
        rows["redis"] = _percentiles(await _measure(redis, _LIMITS, requests // 4))
    finally:
        await client.aclose()
    out = [f"{'path':8} {'p50 us':>9} {'p90 us':>9} {'p99 us':>9}"]
    for name, row in rows.items():
        out.append(f"{name:8} {row['p50_us']:9.1f} {row['p90_us']:9.1f} {row['p99_us']:9.1f}")
    out.append(json.dumps({"limiter": rows, "requests": requests}))
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/15")
    arguments = parser.parse_args()
    anyio.run(main, arguments.requests, arguments.redis)
