"""Open every resource at start-up, close them (flushing records) at shutdown."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING

import anyio
from fastapi import FastAPI
from loguru import logger
from pydantic import SecretStr

from gateway import __version__
from gateway.core.errors import ConfigurationError, GatewayError
from gateway.core.pricing import Price, PriceTable
from gateway.flows.lazy import LazyWorkflows, WorkflowSettings
from gateway.http.resources import Resources
from gateway.http.shutdown import Drain, ProcessHooks, no_process_hooks
from gateway.identity.oidc import OidcVerifier
from gateway.observability.metrics import Metrics
from gateway.observability.tracing import open_tracer
from gateway.security.keyring import Keyring
from gateway.security.master_key import resolve_master_keys
from gateway.services.answer_cache import AnswerCache
from gateway.services.answer_streams import AnswerStreams
from gateway.services.apps import workflows_in_use
from gateway.services.auth_cache import AuthCache
from gateway.services.auth_epochs import AuthEpochs
from gateway.services.end_users import EndUserAuth
from gateway.services.interactions import InteractionRecorder
from gateway.services.limiter import FailPolicy, Limiter
from gateway.services.logs import prune_logs
from gateway.services.origins import KnownOrigins
from gateway.services.provider_keys import ProviderKeyCache
from gateway.services.responses import forget_expired_owners
from gateway.settings import Settings
from gateway.storage.answer_cache import AnswerStore, MemoryAnswerStore, RedisAnswerStore
from gateway.storage.counters.memory import MemoryCounters
from gateway.storage.counters.protocol import QuotaCounters
from gateway.storage.database import Database
from gateway.upstream.fetch import GuardedFetcher
from gateway.upstream.openai import OpenAIUpstream
from gateway.upstream.proxy import ProxyConfigError, ProxyRoutes
from gateway.upstream.resilience import CircuitBreakers, ResilientUpstream, RetryPolicy

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from gateway.services.answer_relay import AnswerRelay


def open_redis(url: str, *, timeout: float) -> tuple[Redis, QuotaCounters]:
    """The Redis client and the quota counters on it (imported here: ~6 MB that a gateway on
    the in-memory counters does without)."""
    from redis.asyncio import Redis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError

    from gateway.storage.counters.redis import RedisCounters

    # A Redis that accepts connections but never answers must cost a request ``timeout``, not
    # seconds: then the fail policies apply. redis-py's default retries timeouts 10 times with
    # backoff; here a broken connection (a restarted Redis) is retried once, a timeout never.
    redis = Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=30,
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
    )
    return redis, RedisCounters(redis)


def open_relay(
    settings: Settings, redis: Redis | None, metrics: Metrics
) -> tuple[AnswerRelay | None, Redis | None]:
    """With Redis: the relay of answers across replicas, and its client for blocking reads."""
    if redis is None or settings.redis_url is None:
        return None, None
    from gateway.services.answer_relay import BLOCK_S, AnswerRelay
    from gateway.storage.answer_events import connect_reader

    reader = connect_reader(settings.redis_url, timeout=settings.redis_timeout_s, block_s=BLOCK_S)
    relay = AnswerRelay(
        redis,
        reader,
        retention_s=settings.stream_retention_s,
        buffer_max_bytes=settings.stream_buffer_max_bytes,
        metrics=metrics,
    )
    return relay, reader


async def prune_forever(db: Database, days: int) -> None:
    """Keep the interaction table bounded: delete what is older than the retention, hourly."""
    while True:
        try:
            deleted = await prune_logs(db, older_than=timedelta(days=days))
            if deleted:
                logger.bind(deleted=deleted).info("old interaction records pruned")
        except GatewayError:
            logger.warning("pruning interaction records failed; will retry")
        await anyio.sleep(3600)


async def forget_owners_forever(db: Database) -> None:
    """Keep response_owners bounded: the upstream deletes stored responses after 30 days."""
    while True:
        try:
            await forget_expired_owners(db)
        except GatewayError:
            logger.warning("pruning response owners failed; will retry")
        await anyio.sleep(3600)


async def watch_dependencies(resources: Resources, interval: float = 10.0) -> None:
    """Keep orchestra_dependency_up current even when nobody calls /status."""
    metrics = resources.metrics
    failing: set[str] = set()
    while True:
        states = resources.breakers.states()
        for upstream in failing | set(states):
            metrics.circuit_open.labels(upstream).set(states.get(upstream, "closed") == "open")
        failing = set(states)
        metrics.dependency_up.labels("database").set(1 if await resources.db.ping() else 0)
        if resources.redis is not None:
            try:
                await resources.redis.ping()
                metrics.dependency_up.labels("redis").set(1)
            except Exception:  # noqa: BLE001 (any failure means "down")
                metrics.dependency_up.labels("redis").set(0)
        await anyio.sleep(interval)


def open_answer_store(settings: Settings, redis: Redis | None) -> AnswerStore:
    """Shared by the replicas on Redis; else this process's memory."""
    if redis is None:
        return MemoryAnswerStore(settings.cache_max_bytes)
    return RedisAnswerStore(redis, settings.cache_max_bytes)


def egress_routes(settings: Settings) -> ProxyRoutes:
    """The egress proxy routes; a bad proxy URL stops start-up with a message (no secret)."""

    def secret(value: SecretStr | None) -> str | None:
        return None if value is None else value.get_secret_value()

    try:
        return ProxyRoutes.from_settings(
            upstream_proxy_url=secret(settings.upstream_proxy_url),
            https_proxy=secret(settings.https_proxy),
            http_proxy=secret(settings.http_proxy),
            no_proxy=settings.no_proxy,
        )
    except ProxyConfigError as exc:
        raise ConfigurationError(str(exc)) from None


def lifespan_for(  # type: ignore[no-untyped-def]
    settings: Settings, process: ProcessHooks = no_process_hooks
):
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        keys = await anyio.to_thread.run_sync(
            resolve_master_keys, settings.master_key, settings.master_key_file
        )
        keyring = Keyring(keys)
        drain = Drain(timeout=settings.shutdown_drain_s)
        db = Database.open(settings.resolved_database_url, schema=settings.database_schema)
        await db.ensure_current()
        multiprocess_dir = settings.metrics_multiprocess_dir
        metrics = Metrics(
            multiprocess_dir=None if multiprocess_dir is None else str(multiprocess_dir)
        )
        tracer = open_tracer(settings, version=__version__)
        recorder = InteractionRecorder(
            db,
            batch_size=settings.log_batch_size,
            flush_interval=settings.log_flush_interval_s,
            metrics=metrics,
            tracer=tracer,
        )
        proxies = egress_routes(settings)
        ca_file = settings.upstream_ca_bundle
        ca_bundle = None if ca_file is None else str(ca_file)
        openai = OpenAIUpstream(
            connect_timeout=settings.connect_timeout_s,
            first_token_timeout=settings.first_token_timeout_s,
            allowed_hosts=settings.allowed_upstream_hosts,
            max_event_bytes=settings.upstream_max_event_bytes,
            proxies=proxies,
            ca_bundle=ca_bundle,
        )
        upstream = ResilientUpstream(
            openai,
            policy=RetryPolicy(
                attempts=settings.upstream_attempts, deadline_s=settings.upstream_retry_deadline_s
            ),
            breakers=CircuitBreakers(
                failure_threshold=settings.circuit_failure_threshold,
                cooldown_s=settings.circuit_cooldown_s,
            ),
        )
        redis: Redis | None = None
        counters: QuotaCounters = MemoryCounters()
        if settings.redis_url:
            redis, counters = open_redis(settings.redis_url, timeout=settings.redis_timeout_s)
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
            metrics=metrics,
        )
        workflows = LazyWorkflows(
            upstream=upstream,
            moderator=openai,
            settings=WorkflowSettings(
                database_url=settings.resolved_database_url,
                database_schema=settings.database_schema,
                first_token_timeout=settings.first_token_timeout_s,
                idle_timeout=settings.idle_timeout_s,
                token_budget=settings.conversation_token_budget,
            ),
        )
        auth_epochs = AuthEpochs(db, redis=redis, interval=settings.auth_epoch_poll_s)
        # OpenID providers' keys are fetched under the same SSRF rules as upstream URLs.
        identity_fetcher = GuardedFetcher(
            allowed_hosts=settings.allowed_upstream_hosts,
            connect_timeout=settings.connect_timeout_s,
            proxies=proxies,
            ca_bundle=ca_bundle,
        )
        end_users = EndUserAuth(
            db,
            keyring,
            auth_epochs,
            ttl=settings.auth_cache_ttl_s,
            oidc=OidcVerifier(identity_fetcher, refetch_interval_s=settings.oidc_key_refetch_s),
        )
        relay, relay_reader = open_relay(settings, redis, metrics)
        app.state.resources = Resources(
            settings=settings,
            db=db,
            keyring=keyring,
            upstream=upstream,
            breakers=upstream.breakers,
            recorder=recorder,
            limiter=limiter,
            auth=AuthCache(
                db, ttl=settings.auth_cache_ttl_s, epochs=auth_epochs, end_users=end_users
            ),
            origins=KnownOrigins(db),
            redis=redis,
            metrics=metrics,
            provider_keys=ProviderKeyCache(db, keyring, ttl=settings.auth_cache_ttl_s),
            drain=drain,
            started_at=time.time(),
            streams=AnswerStreams(
                grace_s=settings.stream_detach_grace_s,
                retention_s=settings.stream_retention_s,
                buffer_max_bytes=settings.stream_buffer_max_bytes,
                memory_max_bytes=settings.stream_memory_max_bytes,
                metrics=metrics,
                on_drain=drain.on_due,
            ),
            workflows=workflows,
            tracer=tracer,
            answer_cache=AnswerCache(
                open_answer_store(settings, redis),
                limiter=limiter,
                recorder=recorder,
                metrics=metrics,
            ),
            relay=relay,
        )
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(recorder.run)
                await tasks.start(app.state.resources.streams.run)  # hosts the answers
                await tasks.start(workflows.run)
                tasks.start_soon(watch_dependencies, app.state.resources)
                tasks.start_soon(limiter.leases.run)  # keeps live answers' quota leases
                if relay is not None:
                    tasks.start_soon(relay.run, app.state.resources.streams)
                tasks.start_soon(auth_epochs.run)  # revocations reach this process in < 2 s
                tasks.start_soon(workflows.preload, partial(workflows_in_use, db))
                tasks.start_soon(forget_owners_forever, db)
                if settings.log_retention_days:
                    tasks.start_soon(prune_forever, db, settings.log_retention_days)
                # Only `orchestra serve` tunes its process here (gateway/server/process.py).
                with process(drain):
                    try:
                        yield
                    finally:
                        tasks.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await recorder.close()
                if tracer is not None:  # after the last record: its span is exported too
                    await anyio.to_thread.run_sync(tracer.shutdown)
                await workflows.aclose()
                await upstream.aclose()
                await identity_fetcher.aclose()
                if redis is not None:
                    await redis.aclose()
                if relay_reader is not None:
                    await relay_reader.aclose()
                await db.close()

    return lifespan
