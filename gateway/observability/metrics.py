"""Every Prometheus metric of the gateway, in one registry, with bounded labels only.

Labels: ``route`` (the route template), ``app`` (the registered app's name: a set the operator
controls), ``model``, ``outcome``, ``status_class``, ``kind``, ``limit``, ``score`` (``up`` or
``down``). Never a token, a user, a
prompt or a raw path. Most series are derived from the interaction record, written once per
request, so the metrics and ``/logs`` always agree.

With several worker processes (``orchestra serve --workers N``) prometheus-client's multiprocess
mode is used: ``PROMETHEUS_MULTIPROC_DIR`` is set by the CLI before the workers start.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_OVERHEAD = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)


@dataclass(frozen=True, slots=True)
class Observation:
    """What one finished request contributes to the metrics."""

    route: str
    app: str
    outcome: str
    http_status: int
    model: str | None
    error_code: str | None
    quota_limit: str | None
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    duration_s: float
    ttft_s: float | None
    upstream_s: float | None


_WORKER_FILE = re.compile(r"_(\d+)\.db$")
#: Per-process values that are not summed over the workers: the lowest one is kept.
_LOWEST = frozenset({"process_max_fds", "process_start_time_seconds"})


def _constant(pid: int) -> Callable[[], int]:
    return lambda: pid


class _WorkerProcesses(Collector):
    """``process_*`` in multiprocess mode, over every live worker (prometheus-client has none).

    The workers are the pids of the value files in the shared directory; each one's /proc is read
    like ``ProcessCollector`` does for the current process. Memory, CPU and open files are summed
    (the gateway's footprint), the fd limit is the lowest, the start time the earliest.
    """

    def __init__(self, path: str) -> None:
        self._path = Path(path)

    def _pids(self) -> list[int]:
        found = (_WORKER_FILE.search(f.name) for f in self._path.glob("*.db"))
        return sorted({int(m.group(1)) for m in found if m})

    def collect(self) -> Iterable[Metric]:
        merged: dict[str, Metric] = {}
        values: dict[str, list[float]] = {}
        for pid in self._pids():
            reader = ProcessCollector(pid=_constant(pid), registry=None)
            for family in reader.collect():
                merged.setdefault(family.name, family)
                values.setdefault(family.name, []).extend(s.value for s in family.samples)
        for name, family in merged.items():
            combine = min if name in _LOWEST else sum
            sample = family.samples[0]
            family.samples = [sample._replace(value=float(combine(values[name])))]
            yield family


class Metrics:
    def __init__(self, *, multiprocess_dir: str | None = None) -> None:
        # The *_created series double the output for no use here.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=True)
        self._multiprocess = multiprocess_dir is not None
        # In multiprocess mode the values live in files; the collector reads every worker's.
        own = None if self._multiprocess else self.registry
        r = own
        self.requests = Counter(
            "orchestra_requests_total",
            "Requests answered.",
            ["route", "app", "outcome", "status_class"],
            registry=r,
        )
        self.duration = Histogram(
            "orchestra_request_duration_seconds",
            "Time from request to the last byte.",
            ["route", "app"],
            buckets=_LATENCY,
            registry=r,
        )
        self.ttft = Histogram(
            "orchestra_time_to_first_token_seconds",
            "Time from request to the first token.",
            ["app", "model"],
            buckets=_LATENCY,
            registry=r,
        )
        self.tokens = Counter(
            "orchestra_tokens_total", "Tokens used.", ["app", "model", "kind"], registry=r
        )
        self.cost = Counter(
            "orchestra_cost_usd_total", "Cost in US dollars.", ["app", "model"], registry=r
        )
        self.quota_rejections = Counter(
            "orchestra_quota_rejections_total",
            "Requests refused by a quota.",
            ["app", "limit"],
            registry=r,
        )
        self.upstream_errors = Counter(
            "orchestra_upstream_errors_total",
            "Upstream failures by kind.",
            ["app", "kind"],
            registry=r,
        )
        self.upstream_duration = Histogram(
            "orchestra_upstream_duration_seconds",
            "Time the upstream took to answer.",
            ["model"],
            buckets=_LATENCY,
            registry=r,
        )
        self.active_streams = Gauge(
            "orchestra_active_streams",
            "Answers streaming now.",
            ["app"],
            multiprocess_mode="livesum",
            registry=r,
        )
        self.overhead = Histogram(
            "orchestra_gateway_overhead_seconds",
            "Time spent in the gateway itself, upstream excluded.",
            buckets=_OVERHEAD,
            registry=r,
        )
        self.records_dropped = Counter(
            "orchestra_interaction_records_dropped_total",
            "Interaction records lost because the buffer overflowed.",
            registry=r,
        )
        self.records_rejected = Counter(
            "orchestra_records_rejected_total",
            "Interaction records the database refused: written without their content "
            "(sanitized) or not at all (dropped).",
            ["kind"],
            registry=r,
        )
        for kind in ("sanitized", "dropped"):  # exposed at 0, so alerts can see them move
            self.records_rejected.labels(kind)
        self.feedback = Counter(
            "orchestra_feedback_total",
            "Ratings of answers by their users (score: up or down); a rating replaced by a "
            "new one counts again.",
            ["app", "score"],
            registry=r,
        )
        # The answer cache (``app`` is bounded: registered apps only).
        self.cache_hits = Counter(
            "orchestra_cache_hits_total", "Requests answered from the cache.", ["app"], registry=r
        )
        self.cache_misses = Counter(
            "orchestra_cache_misses_total",
            "Cacheable requests the cache could not answer.",
            ["app"],
            registry=r,
        )
        self.cache_evictions = Counter(
            "orchestra_cache_evictions_total",
            "Cached answers dropped before their time to stay under cache_max_bytes.",
            registry=r,
        )
        self.sessions = Counter(
            "orchestra_sessions_total",
            "POST /sessions: sessions minted, and refused (a bad or end-user token, a refused "
            "origin, a bad body); app is unknown when the token named none.",
            ["app", "outcome"],
            registry=r,
        )
        self.quota_unavailable = Counter(
            "orchestra_quota_counters_unavailable_total",
            "Requests decided while the quota counters were unreachable.",
            ["policy"],
            registry=r,
        )
        self.quota_leases = Gauge(
            "orchestra_quota_leases",
            "Reservations this process keeps alive (sampled at each lease heartbeat).",
            multiprocess_mode="livesum",
            registry=r,
        )
        #: Resumable answers (issue 15): what happened to answers whose readers came and went.
        self.streams_detached = Counter(
            "orchestra_streams_detached_total",
            "Answers still being generated when their last reader left.",
            registry=r,
        )
        self.streams_resumed = Counter(
            "orchestra_streams_resumed_total",
            "Readers that attached to an answer after it started (GET /ask/{id}/events).",
            registry=r,
        )
        self.streams_cancelled = Counter(
            "orchestra_streams_cancelled_total",
            "Answers stopped by POST /ask/{id}/cancel.",
            registry=r,
        )
        self.streams_expired = Counter(
            "orchestra_streams_expired_total",
            "Detached answers cancelled because no reader came back within the grace.",
            registry=r,
        )
        self.streams_evicted = Counter(
            "orchestra_streams_evicted_total",
            "Ended answers dropped before their retention ended, to stay in the memory bound.",
            registry=r,
        )
        self.streams_relay_failures = Counter(
            "orchestra_streams_relay_failures_total",
            "Redis calls of the answer relay (other replicas' readers and cancels) that failed.",
            registry=r,
        )
        self.streams_buffered_bytes = Gauge(
            "orchestra_streams_buffered_bytes",
            "Bytes of answer events held for replay by this process.",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.dependency_up = Gauge(
            "orchestra_dependency_up",
            "1 when the dependency answers (database, redis).",
            ["dependency"],
            multiprocess_mode="max",
            registry=r,
        )
        self.circuit_open = Gauge(
            "orchestra_circuit_open",
            "1 while an upstream's circuit breaker is open.",
            ["upstream"],
            multiprocess_mode="max",
            registry=r,
        )
        if multiprocess_dir is not None:
            multiprocess.MultiProcessCollector(  # type: ignore[no-untyped-call]
                self.registry, path=multiprocess_dir
            )
            self.registry.register(_WorkerProcesses(multiprocess_dir))
            PlatformCollector(registry=self.registry)
        else:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)

    def observe(self, o: Observation) -> None:
        self.requests.labels(o.route, o.app, o.outcome, f"{o.http_status // 100}xx").inc()
        self.duration.labels(o.route, o.app).observe(o.duration_s)
        model = o.model or "unknown"
        if o.ttft_s is not None:
            self.ttft.labels(o.app, model).observe(o.ttft_s)
        # Counters only go up (prometheus-client raises otherwise): a negative or NaN amount,
        # whatever produced it, is not counted rather than losing the request's record.
        if o.prompt_tokens > 0:
            self.tokens.labels(o.app, model, "prompt").inc(o.prompt_tokens)
        if o.completion_tokens > 0:
            self.tokens.labels(o.app, model, "completion").inc(o.completion_tokens)
        if o.cost_usd > 0:
            self.cost.labels(o.app, model).inc(o.cost_usd)
        if o.error_code == "quota_exceeded":
            self.quota_rejections.labels(o.app, o.quota_limit or "unknown").inc()
        if o.outcome == "upstream_error":
            self.upstream_errors.labels(o.app, o.error_code or "upstream_error").inc()
        if o.upstream_s is not None:
            self.upstream_duration.labels(model).observe(o.upstream_s)
            self.overhead.observe(max(0.0, o.duration_s - o.upstream_s))

    def session(self, app: str, *, minted: bool) -> None:
        self.sessions.labels(app, "minted" if minted else "refused").inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
