"""The orchestration: start the servers, run every scenario direct and through the gateway.

The orchestrator (this process) starts the fake, sets up a temporary ``ORCHESTRA_HOME``
(SQLite) with one app and a generous quota, then per quota backend starts ``orchestra serve``
(one worker) and runs each scenario twice, direct to the fake and through the gateway, with the
same load from the same client processes. Meanwhile it samples the servers' CPU and RSS from
/proc and probes the measured server's event loop with a cheap request every 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fnmatch
import json
import multiprocessing
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import httpx
import redis

from tests.bench import procs, report
from tests.bench import profile as profiling
from tests.bench.client import (
    Expect,
    HttpConnection,
    Job,
    Result,
    connect,
    http_request,
    worker_main,
)
from tests.bench.procs import HOST, Server
from tests.bench.scenarios import DEFAULT, FAKE_KEY, MODEL, QUICK, Scenario, select
from tests.bench.stats import summary

REDIS_URL = "redis://127.0.0.1:6379/15"
APP = "bench"
PROBE_INTERVAL_S = 0.05
RSS_INTERVAL_S = 0.25
MB = 1024 * 1024


# ---------------------------------------------------------------------------- client processes


class ClientPool:
    """Long-lived load-client processes (spawned before any server), one pipe each."""

    def __init__(self, size: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._pipes: list[Connection] = []
        self._procs: list[BaseProcess] = []
        for _ in range(size):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=worker_main, args=(child,), daemon=True)
            proc.start()
            child.close()
            if proc.pid is not None:
                procs.renice(proc.pid)
            self._pipes.append(parent)
            self._procs.append(proc)

    @property
    def size(self) -> int:
        return len(self._pipes)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs if p.pid is not None]

    async def run(
        self, jobs: Sequence[Job], timeout: float, on_open: Callable[[], None] | None = None
    ) -> list[Result]:
        """Run one job per process (the first ``len(jobs)`` processes); their results."""
        opened = 0

        def opened_one() -> None:
            nonlocal opened
            opened += 1
            if opened == len(jobs) and on_open is not None:
                on_open()

        async def one(pipe: Connection, job: Job) -> Result:
            pipe.send(job)
            deadline = time.monotonic() + timeout
            while True:
                message = await asyncio.to_thread(_recv, pipe, deadline)
                kind, value = message
                if kind == "open":
                    opened_one()
                else:
                    assert isinstance(value, Result)
                    return value

        return list(
            await asyncio.gather(*(one(p, j) for p, j in zip(self._pipes, jobs, strict=False)))
        )

    def close(self) -> None:
        for pipe in self._pipes:
            with contextlib.suppress(OSError):
                pipe.send(None)
        for proc in self._procs:
            proc.join(5)
            if proc.is_alive():
                proc.terminate()


def _recv(pipe: Connection, deadline: float) -> tuple[str, object]:
    if not pipe.poll(max(0.0, deadline - time.monotonic())):
        raise TimeoutError("a load client did not report in time")
    message: tuple[str, object] = pipe.recv()
    return message


# ---------------------------------------------------------------------------- one measurement


@dataclass(slots=True)
class Watch:
    """What the orchestrator observed of the servers during a measurement window."""

    server_cpu_pct: float = 0.0
    server_sys_pct: float = 0.0
    server_rss_mb: list[float] = field(default_factory=list)
    upstream_cpu_pct: float | None = None
    probe_ms: list[float] = field(default_factory=list)
    redis_commands: int | None = None
    redis_by_command: dict[str, int] = field(default_factory=dict)
    #: the measured server's own Redis connections: bytes sent, received, writes
    redis_traffic: tuple[int, int, int] | None = None
    #: CPU used by processes outside the benchmark during the window (% of one core): noise.
    foreign_cpu_pct: float | None = None
    load_avg: float | None = None


@dataclass(slots=True)
class Run:
    """Everything shared by the measurements of one benchmark run."""

    args: argparse.Namespace
    workdir: Path
    home: Path
    fake: Server
    token: str
    pool: ClientPool
    direct: dict[tuple[object, ...], dict[str, Any]] = field(default_factory=dict)
    profiles: list[dict[str, Any]] = field(default_factory=list)

    def client_procs(self, concurrency: int) -> int:
        wanted = self.args.client_procs or (1 if concurrency <= 10 else 2)
        return max(1, min(wanted, self.pool.size, concurrency))


async def _sleep_until(at: float) -> None:
    await asyncio.sleep(max(0.0, at - time.monotonic()))


async def _probe(port: int, t0: float, t_end: float, out: list[float]) -> None:
    """Latency of a cheap request (an unknown path: 404) every 50 ms: an upper bound of the
    server's event-loop lag (queueing behind the load included)."""
    loop = asyncio.get_running_loop()
    payload = http_request(HOST, port, "/__bench/probe", b"", {}, method="GET")
    conn: HttpConnection | None = None
    await _sleep_until(t0)
    try:
        while time.monotonic() < t_end:
            if conn is None or conn.closed:
                conn = await connect(loop, HOST, port, "probe")
            await conn.request(payload, 10.0)
            if conn.error is None:
                out.append((conn.t_end - conn.t_send) * 1000)
            await asyncio.sleep(PROBE_INTERVAL_S)
    except OSError:
        pass
    finally:
        if conn is not None:
            conn.close()


def _redis_commands(client: redis.Redis | None) -> int | None:
    if client is None:
        return None
    stats: dict[str, Any] = client.info("stats")
    return int(stats["total_commands_processed"])


def _redis_command_calls(client: redis.Redis | None) -> dict[str, int]:
    """Calls per command name, server-wide (Lua's inner calls included)."""
    if client is None:
        return {}
    stats: dict[str, Any] = client.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}


class Noise:
    """CPU used outside the benchmark's own processes between two points in time."""

    def __init__(self, ours: Sequence[int]) -> None:
        self._ours = sorted({*ours, os.getpid()})  # a pid counted twice would hide noise
        self._busy = procs.machine_busy_s()
        self._first = procs.sample(self._ours)

    def foreign_cpu_pct(self) -> float:
        last = procs.sample(self._ours)
        wall = last.at - self._first.at
        ours = last.cpu_s - self._first.cpu_s
        foreign = procs.machine_busy_s() - self._busy - ours
        return round(max(0.0, 100 * foreign / wall), 1) if wall > 0 else 0.0


async def _watch(
    server: Server,
    upstream: Server | None,
    t0: float,
    t_end: float,
    watch: Watch,
    redis_client: redis.Redis | None,
    ours: Sequence[int],
    on_start: Callable[[], None] | None = None,
) -> None:
    await _sleep_until(t0)
    if on_start is not None:
        on_start()
    noise = Noise(ours)
    first = procs.sample(server.pids)
    up_first = procs.sample(upstream.pids) if upstream else None
    commands = _redis_commands(redis_client)
    calls = _redis_command_calls(redis_client)
    redis_port = 0
    if redis_client is not None:
        redis_port = int(redis_client.connection_pool.connection_kwargs.get("port", 6379))
    traffic = procs.tcp_traffic(server.pids, redis_port) if redis_port else None
    while time.monotonic() < t_end:
        watch.server_rss_mb.append(procs.sample(server.pids).rss_bytes / MB)
        await asyncio.sleep(min(RSS_INTERVAL_S, max(0.0, t_end - time.monotonic())))
    last = procs.sample(server.pids)
    watch.server_rss_mb.append(last.rss_bytes / MB)
    watch.server_cpu_pct = procs.cpu_percent(first, last)
    watch.server_sys_pct = procs.sys_percent(first, last)
    if upstream is not None and up_first is not None:
        watch.upstream_cpu_pct = procs.cpu_percent(up_first, procs.sample(upstream.pids))
    after = _redis_commands(redis_client)
    if commands is not None and after is not None:
        watch.redis_commands = after - commands
        later = _redis_command_calls(redis_client)
        delta = {name: n - calls.get(name, 0) for name, n in later.items()}
        top = sorted(((n, name) for name, n in delta.items() if n > 0), reverse=True)[:8]
        watch.redis_by_command = {name: n for n, name in top}
    if traffic is not None:
        later_traffic = procs.tcp_traffic(server.pids, redis_port)
        delta_traffic = tuple(b - a for a, b in zip(traffic, later_traffic, strict=True))
        watch.redis_traffic = (delta_traffic[0], delta_traffic[1], delta_traffic[2])
    watch.foreign_cpu_pct = noise.foreign_cpu_pct()
    watch.load_avg = procs.load_average()


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _merge(results: Sequence[Result], watch: Watch, window: float) -> dict[str, Any]:
    ttfb = [v for r in results for v in r.ttfb]
    ttfd = [v for r in results for v in r.ttfd]
    total = [v for r in results for v in r.total]
    errors: dict[str, int] = {}
    for r in results:
        for kind, count in r.errors.items():
            errors[kind] = errors.get(kind, 0) + count
    client_cpu = max((100 * r.cpu_s / r.window_s for r in results if r.window_s), default=0.0)
    rss = watch.server_rss_mb
    out: dict[str, Any] = {
        "requests": len(total) + sum(errors.values()),
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "rps": round(len(total) / window, 2) if window else 0.0,
        "ttfb_ms": summary(ttfb),
        "ttfd_ms": summary(ttfd),
        "total_ms": summary(total),
        "server_cpu_pct": watch.server_cpu_pct,
        "server_sys_pct": watch.server_sys_pct,
        "server_rss_mb": round(max(rss), 1) if rss else None,
        "server_rss_mb_start": round(rss[0], 1) if rss else None,
        "upstream_cpu_pct": watch.upstream_cpu_pct,
        "client_procs": len(results),
        "client_cpu_pct_max": round(client_cpu, 1),
        "probe_ms": summary(watch.probe_ms),
        "foreign_cpu_pct": watch.foreign_cpu_pct,
        "load_avg_1m": watch.load_avg,
    }
    if watch.redis_commands is not None:
        out["redis_commands"] = watch.redis_commands
        out["redis_calls_by_command_server_wide"] = watch.redis_by_command
    if watch.redis_traffic is not None:
        sent, received, writes = watch.redis_traffic
        answers = max(1, out["requests"])
        out["redis_bytes_sent_per_request"] = round(sent / answers, 1)
        out["redis_bytes_received_per_request"] = round(received / answers, 1)
        out["redis_writes_per_request"] = round(writes / answers, 2)
    return out


async def measure_load(
    run: Run,
    server: Server,
    sc: Scenario,
    *,
    path: str,
    body: bytes,
    key: str,
    expect: Expect,
    upstream: Server | None = None,
    redis_client: redis.Redis | None = None,
    profile_tag: str | None = None,
) -> dict[str, Any]:
    """The closed-loop load of ``sc`` against ``server``; the merged figures."""
    scale: float = run.args.scale
    warmup, window = sc.warmup_s * scale, sc.measure_s * scale
    accept = "text/event-stream" if sc.stream else "application/json"
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    headers["Accept"] = accept
    payload = http_request(HOST, server.port, path, body, headers)
    start_at = time.monotonic() + 0.2
    t0 = start_at + warmup
    t_end = t0 + window
    drain = 5.0 + sc.tokens * sc.token_ms / 1000
    jobs = [
        Job(HOST, server.port, payload, expect, n, start_at, warmup, window, drain, 60.0)
        for n in _split(sc.concurrency, run.client_procs(sc.concurrency))
    ]
    watch = Watch()
    recording: list[profiling.Recording] = []

    def start_profile() -> None:
        if profile_tag is not None:
            recording.append(
                profiling.record(
                    server.pids[0],
                    window,
                    run.workdir,
                    profile_tag,
                    run.args.rate,
                    gil=run.args.profile_gil,
                )
            )

    ours = [*run.fake.pids, *server.pids, *run.pool.pids]
    watcher = asyncio.create_task(
        _watch(server, upstream, t0, t_end, watch, redis_client, ours, start_profile)
    )
    prober = asyncio.create_task(_probe(server.port, t0, t_end, watch.probe_ms))
    results = await run.pool.run(jobs, timeout=warmup + window + drain + 30)
    await asyncio.gather(watcher, prober)
    out = _merge(results, watch, window)
    if recording:
        await asyncio.to_thread(recording[0].wait, window + 30)
        found = profiling.summarise(recording[0].raw)
        found |= {"scenario": profile_tag, "raw": str(recording[0].raw)}
        found["svg"] = str(recording[0].svg)
        run.profiles.append(found)
        out["profile"] = found
    return out


async def measure_streams(
    run: Run, server: Server, sc: Scenario, *, path: str, body: bytes, key: str, expect: Expect
) -> dict[str, Any]:
    """Hold ``sc.concurrency`` slow streams open at once; RSS idle, while open, and after.

    RSS is sampled every 0.25 s; afterwards each sample is matched with the number of streams
    that were open then (first delta received, end not yet), and the sample with the most open
    streams gives the memory per open stream. If the server never has them all open at once
    (it is too slow to open them before the first ones end), the figure is over fewer streams.
    """
    await asyncio.sleep(1.0)
    idle = procs.sample(server.pids)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    headers["Accept"] = "text/event-stream"
    payload = http_request(HOST, server.port, path, body, headers)
    stream_s = sc.tokens * sc.token_ms / 1000
    start_at = time.monotonic() + 0.2
    # Streams still running this long after the start are cut and counted as "unfinished".
    drain = stream_s + (10.0 if run.args.quick else 60.0)
    jobs = [
        Job(HOST, server.port, payload, expect, n, start_at, 0.0, 0.0, drain, 120.0, True)
        for n in _split(sc.concurrency, run.client_procs(sc.concurrency))
    ]
    samples: list[procs.ProcSample] = []
    done = asyncio.Event()

    async def sample_rss() -> None:
        while not done.is_set():
            samples.append(procs.sample(server.pids))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), RSS_INTERVAL_S)

    sampler = asyncio.create_task(sample_rss())
    started = procs.sample(server.pids)
    noise = Noise([*run.fake.pids, *server.pids, *run.pool.pids])
    try:
        results = await run.pool.run(jobs, timeout=stream_s + 120)
    finally:
        done.set()
        await sampler
    ended = procs.sample(server.pids)
    await asyncio.sleep(1.0)
    after = procs.sample(server.pids)
    window = ended.at - started.at
    watch = Watch(
        server_cpu_pct=procs.cpu_percent(started, ended),
        server_rss_mb=[s.rss_bytes / MB for s in samples],
        foreign_cpu_pct=noise.foreign_cpu_pct(),
        load_avg=procs.load_average(),
    )
    out = _merge(results, watch, window)
    intervals = [(a, b) for r in results for a, b in zip(r.open_from, r.open_until, strict=True)]
    in_flight = [(a, b) for r in results for a, b in zip(r.sent_from, r.sent_until, strict=True)]
    best_open, best_rss, best_at = 0, idle.rss_bytes, 0.0
    for item in samples:
        count = sum(1 for a, b in intervals if a <= item.at < b)
        if (count, item.rss_bytes) > (best_open, best_rss):
            best_open, best_rss, best_at = count, item.rss_bytes, item.at
    flying = sum(1 for a, b in in_flight if a <= best_at < b) if best_open else 0
    opened = [r.opened_s for r in results if r.opened_s is not None]
    out |= {
        "streams": sc.concurrency,
        "stream_s": stream_s,
        "all_started_after_s": round(max(opened), 2) if len(opened) == len(results) else None,
        "max_open_at_once": best_open,
        "rss_idle_mb": round(idle.rss_bytes / MB, 1),
        "rss_open_mb": round(best_rss / MB, 1),
        "rss_peak_mb": round(max(s.rss_bytes for s in samples) / MB, 1) if samples else None,
        "rss_after_mb": round(after.rss_bytes / MB, 1),
        "kb_per_stream": (
            round((best_rss - idle.rss_bytes) / 1024 / best_open, 1) if best_open else None
        ),
        # Requests in the server at that moment, streaming or still waiting for their start.
        "in_flight_then": flying,
        "kb_per_request_in_flight": (
            round((best_rss - idle.rss_bytes) / 1024 / flying, 1) if flying else None
        ),
    }
    return out


# ---------------------------------------------------------------------------- the gateway


def _warm_up(gateway: Server, token: str) -> list[str]:
    """A few answers of every kind, so that lazy imports and caches are in before idle RSS;
    the failures (the run goes on: the scenarios will show them as errors)."""
    prompt = "warm-up [token-ms:0]"
    base = f"http://{HOST}:{gateway.port}"
    auth = {"Authorization": f"Bearer {token}"}
    v1 = {"model": MODEL, "messages": [{"role": "user", "content": prompt}]}
    calls: list[tuple[str, dict[str, Any]]] = [
        ("/ask", {"prompt": prompt}),
        ("/ask", {"prompt": prompt, "stream": False}),
        ("/v1/chat/completions", {**v1, "stream": True}),
        ("/v1/chat/completions", {**v1, "stream": False}),
    ]
    failures: list[str] = []
    with httpx.Client(base_url=base, headers=auth, timeout=30.0, trust_env=False) as http:
        for _ in range(5):
            for path, body in calls:
                response = http.post(path, json=body)
                if response.status_code != 200:
                    failure = f"{path} stream={body.get('stream', True)}: {response.status_code}"
                    failure += f" {response.text[:200]}"
                    if failure not in failures:
                        failures.append(failure)
    return failures


def _redis_client(url: str) -> redis.Redis | None:
    client = redis.Redis.from_url(url, socket_timeout=2.0)
    try:
        client.ping()
    except redis.RedisError:
        return None
    return client


async def _gateway_section(
    run: Run, backend: str, scenarios: list[Scenario], out: dict[str, Any]
) -> None:
    env: dict[str, str] = {}
    redis_client = None
    info: dict[str, Any] = {"backend": backend}
    out["gateways"].append(info)
    if backend == "redis":
        redis_client = _redis_client(run.args.redis_url)
        if redis_client is None:
            info["skipped"] = f"Redis not reachable at {run.args.redis_url}"
            report.progress(f"skip the redis scenarios: {info['skipped']}")
            return
        env["ORCHESTRA_REDIS_URL"] = run.args.redis_url
    report.progress(f"start the gateway ({backend} backend)")
    gateway = procs.start_gateway(run.workdir, run.home, tag=backend, env=env)
    try:
        info["ready_s"] = gateway.ready_s
        info["rss_ready_mb"] = round(procs.sample(gateway.pids).rss_bytes / MB, 1)
        failures = _warm_up(gateway, run.token)
        if failures:
            info["warm_up_failures"] = failures
            info["warm_up_log_errors"] = gateway.log_errors(0)
            report.progress("the gateway failed warm-up requests:\n  " + "\n  ".join(failures))
        await asyncio.sleep(1.0)
        quiet = procs.sample(gateway.pids)
        commands = _redis_commands(redis_client)
        await asyncio.sleep(1.0)
        settled = procs.sample(gateway.pids)
        info["rss_idle_mb"] = round(settled.rss_bytes / MB, 1)
        info["idle_cpu_pct"] = procs.cpu_percent(quiet, settled)
        after = _redis_commands(redis_client)
        if commands is not None and after is not None:
            info["redis_background_commands_per_s"] = after - commands
        for sc in scenarios:
            out["scenarios"].append(await _scenario(run, gateway, sc, redis_client, info))
            if not gateway.alive():
                raise RuntimeError(f"the gateway died:\n{gateway.log_tail()}")
        info["rss_end_mb"] = round(procs.sample(gateway.pids).rss_bytes / MB, 1)
        if backend == "redis":
            info["redis_used"] = _redis_used(out["scenarios"])
    finally:
        gateway.stop()


def _redis_used(rows: list[dict[str, Any]]) -> bool:
    """Did the gateway talk to Redis on its own connections during its windows?

    Measured on the gateway's sockets (``ss``), so other Redis clients of the machine do not
    count; ``redis_commands`` (server-wide) is kept for reference only.
    """
    writes = [
        row["gateway"]["redis_writes_per_request"]
        for row in rows
        if row["backend"] == "redis" and "redis_writes_per_request" in row.get("gateway", {})
    ]
    return bool(writes) and max(writes) >= 0.5


async def _scenario(
    run: Run, gateway: Server, sc: Scenario, redis_client: redis.Redis | None, info: dict[str, Any]
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "scenario": sc.name,
        "route": sc.route,
        "mode": sc.mode,
        "token_ms": sc.token_ms,
        "tokens": sc.tokens,
        "concurrency": sc.concurrency,
        "backend": sc.backend,
        "window_s": sc.measure_s * run.args.scale,
    }
    direct = run.direct.get(sc.direct_key)
    if direct is None:
        report.progress(f"{sc.name}: direct")
        direct = await _measure(run, run.fake, sc, direct=True)
        run.direct[sc.direct_key] = direct
    row["direct"] = direct
    report.progress(f"{sc.name}: gateway")
    tag = sc.name if any(fnmatch.fnmatchcase(sc.name, p) for p in run.args.profile) else None
    log_from = gateway.log_size()
    row["gateway"] = await _measure(
        run, gateway, sc, direct=False, redis_client=redis_client, profile_tag=tag
    )
    if row["gateway"]["errors"]:
        row["gateway"]["log_errors"] = gateway.log_errors(log_from)
    row["ratios"] = report.ratios(direct, row["gateway"])
    if sc.hold:
        row["gateway"]["rss_idle_mb_at_start"] = info.get("rss_idle_mb")
    report.progress(report.one_line(row))
    if "profile" in row["gateway"]:
        report.progress(profiling.render(row["gateway"]["profile"]))
    return row


async def _wait_quiet(run: Run, server: Server) -> float:
    """With ``--wait-quiet S``: wait up to S seconds until processes outside the benchmark use
    less than ``--quiet-below`` % of one core over half a second; the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < run.args.wait_quiet:
        noise = Noise([*run.fake.pids, *server.pids, *run.pool.pids])
        await asyncio.sleep(0.5)
        if noise.foreign_cpu_pct() < run.args.quiet_below:
            break
    return round(time.monotonic() - started, 1)


async def _measure(
    run: Run,
    server: Server,
    sc: Scenario,
    *,
    direct: bool,
    redis_client: redis.Redis | None = None,
    profile_tag: str | None = None,
) -> dict[str, Any]:
    waited = await _wait_quiet(run, server) if run.args.wait_quiet > 0 else 0.0
    result = await _measure_once(
        run, server, sc, direct=direct, redis_client=redis_client, profile_tag=profile_tag
    )
    result["waited_for_quiet_s"] = waited
    return result


async def _measure_once(
    run: Run,
    server: Server,
    sc: Scenario,
    *,
    direct: bool,
    redis_client: redis.Redis | None,
    profile_tag: str | None,
) -> dict[str, Any]:
    if direct:
        path, body, key = "/v1/chat/completions", sc.direct_body(), FAKE_KEY
        expect: Expect = sc.expect_direct
    else:
        (path, body), key, expect = sc.gateway_request(), run.token, sc.expect_gateway
    if sc.hold:
        return await measure_streams(run, server, sc, path=path, body=body, key=key, expect=expect)
    return await measure_load(
        run,
        server,
        sc,
        path=path,
        body=body,
        key=key,
        expect=expect,
        upstream=None if direct else run.fake,
        redis_client=None if direct else redis_client,
        profile_tag=profile_tag,
    )


# ---------------------------------------------------------------------------- the whole run


def _setup_home(home: Path, fake: Server) -> str:
    """Schema, the bench app (pointing at the fake) with a generous quota; its client token."""
    procs.run_cli(home, ["init"])
    created = json.loads(
        procs.run_cli(
            home,
            [
                "apps",
                "add",
                APP,
                "--base-url",
                f"http://{HOST}:{fake.port}/v1",
                "--openai-key-stdin",
                "--json",
            ],
            stdin=FAKE_KEY + "\n",
        )
    )
    # Generous: the checks run on every request but never refuse one.
    procs.run_cli(home, ["quotas", "set", APP, "--rpm", "100000000", "--tpm", "100000000000"])
    token: str = created["token"]
    return token


def _machine() -> dict[str, Any]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    revision = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "cpus": len(Path("/proc/cpuinfo").read_text().split("processor\t:")) - 1,
        "cpu": cpu,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "git": revision or None,
    }


async def run_all(args: argparse.Namespace, scenarios: list[Scenario]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "bench": "orchestra",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": _machine(),
        "settings": {
            "quick": args.quick,
            "scale": args.scale,
            "fake_workers": args.fake_workers,
            "wait_quiet_s": args.wait_quiet,
            "nice": args.nice,
            "client_procs": args.client_procs or "auto (1 for c<=10, else 2)",
        },
        "gateways": [],
        "scenarios": [],
    }
    started = time.monotonic()
    pool = ClientPool(args.client_procs or 2)
    with tempfile.TemporaryDirectory(prefix="orchestra-bench-") as tmp:
        workdir = Path(tmp)
        home = workdir / "home"
        fake = procs.start_fake(workdir, workers=args.fake_workers, tokens=50)
        try:
            token = _setup_home(home, fake)
            out["cli_help_ms"] = procs.time_command(["--help"])
            run = Run(args=args, workdir=workdir, home=home, fake=fake, token=token, pool=pool)
            for backend in ("memory", "redis"):
                section = [s for s in scenarios if s.backend == backend]
                if section:
                    await _gateway_section(run, backend, section, out)
            if args.keep_profiles and run.profiles:
                _keep_profiles(run.profiles, Path(args.keep_profiles))
        finally:
            fake.stop()
            pool.close()
    out["elapsed_s"] = round(time.monotonic() - started, 1)
    out["verdicts"] = report.verdicts(out)
    return out


def _keep_profiles(found: list[dict[str, Any]], target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for item in found:
        for key in ("raw", "svg"):
            source = Path(item[key])
            if source.exists():
                destination = target / source.name
                destination.write_bytes(source.read_bytes())
                item[key] = str(destination)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench",
        description="Orchestra's benchmark: the same load direct to the fake and through the "
        "gateway; prints a table and one JSON line.",
    )
    parser.add_argument("--quick", action="store_true", help="a small subset, under 2 minutes")
    parser.add_argument(
        "--scenarios", nargs="+", metavar="PATTERN", help="shell-style name patterns (see --list)"
    )
    parser.add_argument("--list", action="store_true", help="list the scenario names and exit")
    parser.add_argument("--json-out", type=Path, help="also write the JSON result to this file")
    parser.add_argument("--fake-workers", type=int, default=2, help="fake processes (default 2)")
    parser.add_argument(
        "--client-procs", type=int, default=0, help="load-client processes (default: auto)"
    )
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiply warm-up and measurement durations"
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="S",
        help="before each measurement wait up to S s for other processes to go quiet",
    )
    parser.add_argument(
        "--quiet-below",
        type=float,
        default=20.0,
        metavar="PCT",
        help="'quiet': others use less than PCT %% of one core (default 20)",
    )
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="scheduling priority of every benchmark process (e.g. -10 on a shared machine; "
        "negative needs root)",
    )
    parser.add_argument("--redis-url", default=REDIS_URL, help=f"default {REDIS_URL}")
    parser.add_argument(
        "--profile",
        nargs="+",
        default=[],
        metavar="PATTERN",
        help="record the gateway with py-spy during these scenarios",
    )
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument(
        "--profile-gil", action="store_true", help="py-spy --gil: only the GIL holder's samples"
    )
    parser.add_argument(
        "--keep-profiles", metavar="DIR", help="copy the py-spy outputs here (else they go)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    patterns = tuple(args.scenarios or (QUICK if args.quick else DEFAULT))
    if args.list:
        for sc in select(("*",), args.quick):
            mark = "*" if any(fnmatch.fnmatchcase(sc.name, p) for p in patterns) else " "
            sys.stdout.write(f"{mark} {sc.name}\n")
        return 0
    try:
        scenarios = select(patterns, args.quick)
    except ValueError as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    if args.profile and profiling.py_spy() is None:
        sys.stderr.write("--profile needs py-spy: .venv/bin/pip install py-spy\n")
        return 2
    if args.profile and not args.keep_profiles:
        args.keep_profiles = str(Path(tempfile.gettempdir()) / "orchestra-bench-profiles")
    procs.raise_fd_limit()
    if args.nice:
        procs.NICE["value"] = args.nice
        procs.renice(os.getpid())
    try:
        result = asyncio.run(run_all(args, scenarios))
    except (RuntimeError, TimeoutError, OSError) as exc:
        sys.stderr.write(f"benchmark aborted: {exc}\n")
        return 1
    sys.stdout.write(report.table(result) + "\n")
    line = json.dumps(result, separators=(",", ":"))
    sys.stdout.write(line + "\n")
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=2) + "\n")
    return 0
