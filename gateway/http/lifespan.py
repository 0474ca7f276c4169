"""Open every resource at start-up, close them (flushing records) at shutdown."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI
from redis.asyncio import Redis

from gateway.core.pricing import Price, PriceTable
from gateway.http.resources import Resources
from gateway.security.keyring import Keyring
from gateway.security.master_key import resolve_master_keys
from gateway.services.auth_cache import AuthCache
from gateway.services.interactions import InteractionRecorder
from gateway.services.limiter import FailPolicy, Limiter
from gateway.services.origins import KnownOrigins
from gateway.settings import Settings
from gateway.storage.counters.memory import MemoryCounters
from gateway.storage.counters.protocol import QuotaCounters
from gateway.storage.counters.redis import RedisCounters
from gateway.storage.database import Database
from gateway.upstream.openai import OpenAIUpstream
from gateway.upstream.tokenizer import warm_up


def lifespan_for(settings: Settings):  # type: ignore[no-untyped-def]
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        keys = await anyio.to_thread.run_sync(
            resolve_master_keys, settings.master_key, settings.master_key_file
        )
        db = Database.open(settings.resolved_database_url, schema=settings.database_schema)
        await db.ensure_current()
        recorder = InteractionRecorder(
            db, batch_size=settings.log_batch_size, flush_interval=settings.log_flush_interval_s
        )
        upstream = OpenAIUpstream(
            connect_timeout=settings.connect_timeout_s,
            first_token_timeout=settings.first_token_timeout_s,
        )
        redis = Redis.from_url(settings.redis_url) if settings.redis_url else None
        counters: QuotaCounters = MemoryCounters() if redis is None else RedisCounters(redis)
        limiter = Limiter(
            counters,
            PriceTable(
                {
                    model: Price(p.input_per_million, p.output_per_million)
                    for model, p in settings.prices.items()
                }
            ),
            ttl=settings.reservation_ttl_s,
            policy=FailPolicy(
                requests_fail_open=settings.quota_requests_on_redis_down == "fail_open",
                tokens_fail_open=settings.quota_tokens_on_redis_down == "fail_open",
            ),
        )
        await anyio.to_thread.run_sync(warm_up, settings.default_model)
        app.state.resources = Resources(
            settings=settings,
            db=db,
            keyring=Keyring(keys),
            upstream=upstream,
            recorder=recorder,
            limiter=limiter,
            auth=AuthCache(db, ttl=settings.auth_cache_ttl_s),
            origins=KnownOrigins(db),
            redis=redis,
            started_at=time.time(),
        )
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(recorder.run)
                try:
                    yield
                finally:
                    tasks.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await recorder.close()
                await upstream.aclose()
                if redis is not None:
                    await redis.aclose()
                await db.close()

    return lifespan
