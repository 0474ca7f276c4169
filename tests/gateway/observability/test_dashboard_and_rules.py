"""The Grafana dashboard and the Prometheus rules name only what the gateway really exposes.

Every PromQL expression of ``config/grafana/orchestra.json`` (targets and template variables)
and ``config/prometheus/alerts.yml`` is read, its metric names, label names and literal label
values extracted, and checked against a real ``/metrics`` scrape taken after real traffic (a
success, a quota rejection, and each upstream failure kind the alerts select; a session minted
and one refused, a per-user rejection). The stream series move on a gateway of their own (a
detach grace and a small memory bound): an answer resumed, one cancelled, one expired, some
evicted. ``promtool`` checks the rules and the scrape config, and unit-tests the alerts on
synthetic series.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import redis
import yaml  # type: ignore[import-untyped]  # PyYAML, via uvicorn[standard]

from tests.gateway.http.conftest import (
    MODEL,
    TLS,
    AppHandle,
    Apps,
    Fake,
    Gateway,
    ask_stream,
    child_env,
    free_port,
    gateway_settings,
    run_cli,
    running_gateway,
    spawn,
    sse_events,
)
from tests.gateway.observability.conftest import Scrape, parse_exposition, scrape, scrape_until

ROOT = Path(__file__).resolve().parents[3]
DASHBOARD = ROOT / "config" / "grafana" / "orchestra.json"
PROVISIONING = ROOT / "config" / "grafana" / "provisioning"
ALERTS = ROOT / "config" / "prometheus" / "alerts.yml"
PROMETHEUS = ROOT / "config" / "prometheus" / "prometheus.yml"

# Labels Prometheus adds at scrape time (not in the exposition).
TARGET_LABELS = {"job", "instance"}
# Prometheus's own series (not the gateway's).
BUILT_IN = {"up"}
# Grafana's built-in variables.
GRAFANA_VARIABLES = {"__rate_interval", "__interval", "__range", "__interval_ms"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")

_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_SELECTOR = re.compile(r"(?<![\w:.$])([A-Za-z_:][\w:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r'\s*([A-Za-z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*,?')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_IDENTIFIER = re.compile(r"(?<![\w:.$])[A-Za-z_:][\w:]*")
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*([A-Za-z_:][\w:]*)\s*,\s*(\w+)\s*\)\s*$")


# --- reading PromQL -------------------------------------------------------------------------


@dataclass(frozen=True)
class Matcher:
    metric: str
    label: str
    op: str
    value: str


def metric_names(expr: str) -> set[str]:
    """Every series name an expression selects (functions, keywords and labels excluded)."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = _GROUPING.sub(" ", text)
    names: set[str] = set()
    for found in _IDENTIFIER.finditer(text):
        if text[found.end() :].lstrip().startswith("("):
            continue  # a function or an aggregation
        if found.group().lower() in _KEYWORDS:
            continue
        names.add(found.group())
    return names


def matchers(expr: str) -> list[Matcher]:
    found: list[Matcher] = []
    for selector in _SELECTOR.finditer(expr):
        body = selector.group(2)
        consumed = 0
        for match in _MATCHER.finditer(body):
            assert match.start() == consumed, f"cannot read the matchers {body!r} in {expr!r}"
            consumed = match.end()
            found.append(Matcher(selector.group(1), *match.groups()))
        assert consumed == len(body), f"cannot read the matchers {body!r} in {expr!r}"
    return found


def grouping_labels(expr: str) -> set[str]:
    labels: set[str] = set()
    for group in _GROUPING.finditer(expr):
        labels |= {label.strip() for label in group.group(1).split(",") if label.strip()}
    return labels


def family(name: str) -> str:
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


def literal_alternatives(value: str) -> list[str] | None:
    """``a|b|c`` when the regex is only literal alternatives; None for anything else."""
    if "$" in value or not re.fullmatch(r"[\w.\-]+(\|[\w.\-]+)*", value):
        return None
    return value.split("|")


def test_the_expression_reader_finds_names_labels_and_values() -> None:
    """The extractor itself (or a dashboard full of typos would pass as 'no names found')."""
    expr = (
        'histogram_quantile(0.95, sum by (le, app) (rate(a_seconds_bucket{app=~"$app", '
        'kind!="x|y"}[$__rate_interval]))) / clamp_min(sum(rate(b_total[5m])) without (z), 1e-9)'
        ' > 0.5 and on (app) c_up{job="orchestra"} == 0 or up * 3600 + d:recorded offset 5m'
    )
    assert metric_names(expr) == {"a_seconds_bucket", "b_total", "c_up", "up", "d:recorded"}
    assert matchers(expr) == [
        Matcher("a_seconds_bucket", "app", "=~", "$app"),
        Matcher("a_seconds_bucket", "kind", "!=", "x|y"),
        Matcher("c_up", "job", "=", "orchestra"),
    ]
    assert grouping_labels(expr) == {"le", "app", "z"}
    assert family("a_seconds_bucket") == "a_seconds" and family("b_total") == "b_total"
    assert literal_alternatives("a|b_c") == ["a", "b_c"]
    assert literal_alternatives("$app") is None and literal_alternatives(".*") is None


# --- the files ------------------------------------------------------------------------------


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def dashboard_expressions() -> list[str]:
    exprs = [
        target["expr"]
        for panel in all_panels(dashboard()["panels"])
        for target in panel.get("targets", [])
    ]
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            query = query["query"] if isinstance(query, dict) else query
            found = _LABEL_VALUES.match(query)
            assert found, f"template query {query!r} is not label_values(metric, label)"
            exprs.append(f"sum by ({found.group(2)}) ({found.group(1)})")
    return exprs


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def all_expressions() -> list[str]:
    return dashboard_expressions() + [str(rule["expr"]) for rule in alert_rules()]


def test_the_dashboard_is_a_valid_templated_grafana_dashboard() -> None:
    board = dashboard()
    assert board["uid"] and board["title"] and isinstance(board["schemaVersion"], int)
    variables = {v["name"]: v for v in board["templating"]["list"]}
    source = variables["datasource"]
    assert source["type"] == "datasource" and source["query"] == "prometheus"
    templated = {"type": "prometheus", "uid": "${datasource}"}
    panels = list(all_panels(board["panels"]))
    assert len(panels) >= 9
    ids = [panel["id"] for panel in panels]
    assert all(isinstance(i, int) for i in ids) and len(ids) == len(set(ids)), ids
    for panel in panels:
        assert panel["title"] and panel["type"], panel
        grid = panel["gridPos"]
        assert {"x", "y", "w", "h"} <= set(grid) and 0 <= grid["x"] < grid["x"] + grid["w"] <= 24
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == templated, panel["title"]
        targets = panel["targets"]
        assert targets, f"panel {panel['title']!r} has no query"
        refs = [target["refId"] for target in targets]
        assert len(refs) == len(set(refs)), (panel["title"], refs)
        for target in targets:
            assert target["expr"].strip(), (panel["title"], target)
            assert target.get("datasource", templated) == templated, (panel["title"], target)
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"] == templated, variable
    # Every $variable an expression uses is defined (or one of Grafana's own).
    for expr in dashboard_expressions():
        for name in re.findall(r"\$\{?(\w+)", expr):
            assert name in variables or name in GRAFANA_VARIABLES, (name, expr)
    # No two panels overlap on the grid.
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        g = panel["gridPos"]
        mine = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & mine, f"panel {panel['title']!r} overlaps another"
        cells |= mine


def test_the_dashboard_has_the_panels_the_operators_need() -> None:
    exprs = dashboard_expressions()

    def using(metric: str) -> list[str]:
        return [e for e in exprs if any(family(n) == metric for n in metric_names(e))]

    for metric in (
        "orchestra_requests_total",
        "orchestra_tokens_total",
        "orchestra_cost_usd_total",
        "orchestra_quota_rejections_total",
        "orchestra_active_streams",
        "orchestra_upstream_errors_total",
        "orchestra_feedback_total",
        "orchestra_sessions_total",
    ):
        assert using(metric), f"no panel shows {metric}"
        assert all("app" in grouping_labels(e) for e in using(metric)), metric
    for metric in (*STREAM_COUNTERS, STREAM_GAUGE):
        assert using(metric), f"no panel shows {metric}"
    rows = [p["title"] for p in dashboard()["panels"] if p["type"] == "row"]
    assert rows == [
        "End users & sessions",
        "Streams: detach, resume, cancel",
        "Answer cache",
    ], rows
    for metric in ("orchestra_cache_hits_total", "orchestra_cache_misses_total"):
        assert using(metric), f"no panel shows {metric}"
        assert all("app" in grouping_labels(e) for e in using(metric)), metric
    assert using("orchestra_cache_evictions_total"), "no panel shows cache evictions"
    sessions = using("orchestra_sessions_total")
    assert any("outcome" in grouping_labels(e) for e in sessions), "minted and refused apart"
    rejections = using("orchestra_quota_rejections_total")
    assert any('limit=~"user_.*"' in e for e in rejections), "no panel shows per-user rejections"
    for histogram in (
        "orchestra_time_to_first_token_seconds",
        "orchestra_request_duration_seconds",
        "orchestra_gateway_overhead_seconds",
    ):
        quantiles = {
            float(q)
            for e in using(histogram)
            for q in re.findall(r"histogram_quantile\(([\d.]+)", e)
        }
        assert quantiles == {0.5, 0.95, 0.99}, (histogram, quantiles)
    errors = using("orchestra_requests_total")
    assert any("status_class" in e for e in errors), "no panel shows errors per status class"
    ratings = using("orchestra_feedback_total")
    assert any("score" in grouping_labels(e) for e in ratings), "no panel splits up and down"
    assert any('score="up"' in e for e in ratings), "no panel shows the share rated up"


def test_the_provisioning_files_point_grafana_at_prometheus_and_the_dashboard() -> None:
    dashboards = yaml.safe_load((PROVISIONING / "dashboards" / "orchestra.yml").read_text())
    assert dashboards["apiVersion"] == 1
    (provider,) = dashboards["providers"]
    assert provider["type"] == "file" and provider["options"]["path"]
    sources = yaml.safe_load((PROVISIONING / "datasources" / "orchestra.yml").read_text())
    assert sources["apiVersion"] == 1
    assert [s["type"] for s in sources["datasources"]] == ["prometheus"]


def test_the_alert_rules_cover_what_the_issue_asks_for() -> None:
    rules = {rule["alert"]: rule for rule in alert_rules()}
    wanted = {
        "high error rate": "orchestra_requests_total",
        "upstream down": "orchestra_upstream_errors_total",
        "quota rejections spike": "orchestra_quota_rejections_total",
        "TTFT p95 high": "orchestra_time_to_first_token_seconds_bucket",
        "Redis/database down": "orchestra_dependency_up",
        "session refusals spike": "orchestra_sessions_total",
        "answers evicted (memory bound too low)": "orchestra_streams_evicted_total",
        "detached answers expire unread": "orchestra_streams_expired_total",
        "cache evictions high": "orchestra_cache_evictions_total",
    }
    for what, metric in wanted.items():
        assert any(metric in metric_names(str(r["expr"])) for r in rules.values()), what
    per_user = [r for r in rules.values() if 'limit=~"user_.*"' in str(r["expr"])]
    assert per_user, "per-user rejections"
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}, name
        assert rule["annotations"]["summary"], name
    # The newer rules say what to do, not only what happened.
    for name in ("OrchestraSessionRefusalsSpike", "OrchestraStreamsEvicted", *per_user_names()):
        assert len(rules[name]["annotations"]["description"]) > 100, name


def per_user_names() -> list[str]:
    return [r["alert"] for r in alert_rules() if 'limit=~"user_.*"' in str(r["expr"])]


def test_the_scrape_job_is_the_one_the_queries_select() -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["orchestra"]["metrics_path"] == "/metrics"
    assert "alerts.yml" in config["rule_files"]
    for expr in all_expressions():
        for matcher in matchers(expr):
            if matcher.label == "job":
                assert matcher.op == "=" and matcher.value in jobs, expr


# --- against a real scrape ------------------------------------------------------------------


async def _traffic(gateway: Gateway, fake: Fake, issued: set[str]) -> Scrape:
    """A success (rated up and down), a quota rejection and each upstream failure kind; the
    scrape after them."""
    apps = Apps(gateway, fake, issued, "dashboard")
    ok = await apps.add()
    limited = await apps.add()
    await gateway.cli("quotas", "set", limited.name, "--rpm", "1")
    down = await apps.add(base_url=f"http://127.0.0.1:{free_port()}/v1")
    users = await apps.add()
    await gateway.cli("quotas", "set", users.name, "--user-rpm", "1")
    cached = await apps.add()
    await gateway.cli("apps", "update", cached.name, "--cache-ttl", "10m")
    names = [ok.name, limited.name, down.name, users.name, cached.name]
    async with gateway.client() as client:
        alice = await session_for(client, users, "alice", issued)
        # An end user's token cannot mint sessions: refused, and counted against its app.
        refused = await client.post("/sessions", json={"user": "eve"}, headers=alice.auth)
        assert refused.status_code == 403, refused.text
        for _ in range(2):  # the second is over alice's own limit (user_rpm), not the app's
            await client.post("/ask", json={"prompt": "hi", "stream": False}, headers=alice.auth)
        answered = await ask_stream(client, ok, {"prompt": "hello"})
        for score in (1, -1):
            rating = {"request_id": answered.request_id, "score": score}
            assert (await client.post("/feedback", json=rating, headers=ok.auth)).status_code == 204
        chat = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
        assert (await client.post("/v1/chat/completions", json=chat, headers=ok.auth)).is_success
        for _ in range(2):
            await client.post("/ask", json={"prompt": "hi", "stream": False}, headers=limited.auth)
        for prompt in ("[fail:500]", "[hang]"):
            await client.post("/ask", json={"prompt": prompt}, headers=ok.auth)
        await client.post("/ask", json={"prompt": "hi"}, headers=down.auth)
        for _ in range(2):  # a miss, then a hit
            same = {"prompt": "cache me", "stream": False, "temperature": 0}
            assert (await client.post("/ask", json=same, headers=cached.auth)).is_success

    def settled(s: Scrape) -> bool:
        counts = [s.total("orchestra_requests_total", app=name) for name in names]
        rated = s.total("orchestra_feedback_total", app=ok.name)
        sessions = [
            s.value("orchestra_sessions_total", app=users.name, outcome=outcome)
            for outcome in ("minted", "refused")
        ]
        per_user = s.value("orchestra_quota_rejections_total", app=users.name, limit="user_rpm")
        return (
            counts == [4, 2, 1, 2, 2]
            and s.value("orchestra_cache_hits_total", app=cached.name) == 1
            and s.value("orchestra_cache_misses_total", app=cached.name) == 1
            and rated == 2
            and sessions == [1, 1]
            and per_user == 1
            and bool(s.series("orchestra_dependency_up"))
        )

    return await scrape_until(gateway, settled, timeout=10)


async def session_for(
    client: httpx.AsyncClient, app: AppHandle, user: str, issued: set[str]
) -> AppHandle:
    """The app as end user ``user`` (a session minted by the app's backend)."""
    response = await client.post("/sessions", json={"user": user}, headers=app.auth)
    assert response.status_code == 201, response.text
    token = response.json()["token"]
    issued.add(token)
    return AppHandle(app.name, app.id, token, "", None)


@pytest.fixture(scope="module")
def exposed(gateway: Gateway, fake: Fake, issued_secrets: set[str]) -> Scrape:
    return anyio.run(_traffic, gateway, fake, issued_secrets)


def test_every_metric_the_dashboard_and_the_rules_use_is_exposed(exposed: Scrape) -> None:
    exposed_names = exposed.names()
    families = {family(name) for name in exposed_names}
    used = {name for expr in all_expressions() for name in metric_names(expr)} - BUILT_IN
    assert len(used) >= 12, used
    assert "process_resident_memory_bytes" in used  # the built-ins are checked too
    missing = sorted(name for name in used if name not in exposed_names)
    assert not missing, f"used but not exposed after real traffic: {missing}"
    assert {family(name) for name in used} <= families


def test_every_label_the_queries_use_exists_with_the_values_they_select(
    exposed: Scrape,
) -> None:
    def labels_of(metric: str) -> set[str]:
        return {key for series in exposed.series(metric) for key in series}

    def values_of(metric: str, label: str) -> set[str]:
        return {series[label] for series in exposed.series(metric) if label in series}

    for expr in all_expressions():
        names = metric_names(expr) - BUILT_IN
        known = set().union(*(labels_of(n) for n in names)) | TARGET_LABELS
        assert grouping_labels(expr) <= known, (expr, grouping_labels(expr) - known)
        for m in matchers(expr):
            if m.metric in BUILT_IN or m.label in TARGET_LABELS:
                continue
            assert m.label in labels_of(m.metric), (m, expr)
            wanted = [m.value] if m.op == "=" else literal_alternatives(m.value)
            if wanted is None or "$" in m.value or m.op.startswith("!"):
                continue
            missing = set(wanted) - values_of(m.metric, m.label)
            assert not missing, f"{m.metric}{{{m.label}}} never takes {missing} ({expr})"


def test_process_metrics_are_live(gateway: Gateway) -> None:
    async def two() -> tuple[Scrape, Scrape]:
        return await scrape(gateway), await scrape(gateway)

    first, second = anyio.run(two)
    assert first.value("process_resident_memory_bytes") > 10_000_000
    assert second.value("process_cpu_seconds_total") >= first.value("process_cpu_seconds_total")
    assert first.value("process_start_time_seconds") > 1_600_000_000
    with httpx.Client(timeout=10, verify=TLS) as http:
        assert http.get(f"{gateway.url}/metrics").status_code == 200


# --- the stream series, on a gateway that keeps answers for a grace and evicts ------------

STREAM_COUNTERS = (
    "orchestra_streams_detached_total",
    "orchestra_streams_resumed_total",
    "orchestra_streams_cancelled_total",
    "orchestra_streams_expired_total",
    "orchestra_streams_evicted_total",
)
STREAM_GAUGE = "orchestra_streams_buffered_bytes"
LONG = "[tokens:60] [token-ms:25]"  # 1.5 s of answer: time to leave it and come back
GRACE_S = 1.0
# Small enough that ended answers (8 tokens, about 1 KB of events each) are evicted.
BUFFER_BYTES, MEMORY_BYTES = 4096, 8192


@pytest.fixture(scope="module")
def streaming(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    root = tmp_path_factory.mktemp("dashboard-streams")
    home = root / "home"
    run_cli(["init"], child_env({"home": home}))
    with running_gateway(
        home,
        root / "logs",
        name="streams-gateway",
        database_url=f"sqlite+aiosqlite:///{home}/orchestra.db",
        stream_detach_grace_s=GRACE_S,
        stream_buffer_max_bytes=BUFFER_BYTES,
        stream_memory_max_bytes=MEMORY_BYTES,
    ) as gateway:
        yield gateway


async def _leave_after_first_delta(gateway: Gateway, app: AppHandle) -> str:
    """POST /ask a long answer, read one delta, close the connection; its request id."""
    async with (
        gateway.client() as client,
        client.stream("POST", "/ask", json={"prompt": LONG}, headers=app.auth) as response,
    ):
        assert response.status_code == 200, await response.aread()
        async for event in sse_events(response):
            if event.name == "delta":
                return response.headers["x-request-id"]
    raise AssertionError("the answer ended without a delta")


async def _stream_traffic(gateway: Gateway, fake: Fake, issued: set[str]) -> tuple[Scrape, Scrape]:
    """One answer resumed, one expired, one cancelled, then enough to evict: (before, after)."""
    app = await Apps(gateway, fake, issued, "streams").add()
    before = await scrape(gateway)

    def moved(name: str) -> Callable[[Scrape], bool]:
        return lambda s: s.value(name) > before.value(name)

    resumed = await _leave_after_first_delta(gateway, app)
    # Resumed only once it is detached (a reader attaching earlier keeps it attached).
    await scrape_until(gateway, moved("orchestra_streams_detached_total"), timeout=10)
    async with gateway.client() as client:
        follow = client.stream("GET", f"/ask/{resumed}/events", headers=app.auth)
        async with follow as response:
            assert response.status_code == 200, await response.aread()
            names = [e.name async for e in sse_events(response) if not e.is_comment]
        assert names[-1] == "done", names
        await _leave_after_first_delta(gateway, app)  # nobody comes back: it expires
        await scrape_until(gateway, moved("orchestra_streams_expired_total"), timeout=10)
        body = {"prompt": LONG}
        async with client.stream("POST", "/ask", json=body, headers=app.auth) as response:
            seen: list[str] = []
            async for event in sse_events(response):
                if event.is_comment:
                    continue
                if not seen:
                    request_id = response.headers["x-request-id"]
                    async with gateway.client() as other:
                        cancel = await other.post(f"/ask/{request_id}/cancel", headers=app.auth)
                    assert cancel.is_success, cancel.text
                seen.append(event.json.get("code", event.name))
        assert seen[-1] == "cancelled", seen
        for _ in range(3 * MEMORY_BYTES // 1024):  # ended answers, kept for replay: evicted
            assert (await ask_stream(client, app, {"prompt": "hi"})).events[-1].name == "done"
    after = await scrape_until(gateway, moved("orchestra_streams_evicted_total"), timeout=10)
    return before, after


def test_the_stream_panels_series_move_with_real_streams(
    streaming: Gateway, fake: Fake, issued_secrets: set[str]
) -> None:
    shown = {
        family(name)
        for expr in all_expressions()
        for name in metric_names(expr)
        if name.startswith("orchestra_streams_")
    }
    assert shown == {*STREAM_COUNTERS, STREAM_GAUGE}, shown
    before, after = anyio.run(_stream_traffic, streaming, fake, issued_secrets)
    for name in STREAM_COUNTERS:
        assert after.value(name) > before.value(name), name
    assert 0 < after.value(STREAM_GAUGE) <= MEMORY_BYTES


# --- with several workers (prometheus-client's multiprocess mode) -------------------------

PYTHON_INFO = {
    "implementation": platform.python_implementation(),
    "major": str(sys.version_info.major),
    "minor": str(sys.version_info.minor),
    "patchlevel": str(sys.version_info.micro),
    "version": ".".join(map(str, sys.version_info[:3])),
}
REDIS_URL = "redis://127.0.0.1:6379/14"  # `--workers N` needs Redis (shared quota counters)


@pytest.fixture(scope="module")
def workers(gateway: Gateway, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """`orchestra serve --workers 2` on the folder's database."""
    try:
        with redis.Redis.from_url(REDIS_URL, socket_timeout=2) as client:
            client.ping()
    except redis.RedisError as error:
        pytest.fail(f"Redis on 127.0.0.1:6379 is needed for --workers 2: {error}")
    settings = gateway_settings(gateway.home, redis_url=REDIS_URL)
    env = child_env(settings)
    logs = tmp_path_factory.mktemp("workers")
    server = spawn("workers", ["serve", "--workers", "2"], env, logs, free_port())
    try:
        server.wait_ready("/status")
        yield Gateway(server, gateway.home, env, gateway.database_url)
    finally:
        server.stop()


def test_with_several_workers_the_same_names_are_exposed(
    workers: Gateway, fake: Fake, issued_secrets: set[str]
) -> None:
    exposed = anyio.run(_traffic, workers, fake, issued_secrets)
    used = {name for expr in all_expressions() for name in metric_names(expr)} - BUILT_IN
    missing = sorted(name for name in used if name not in exposed.names())
    assert not missing, f"not exposed with --workers 2: {missing}"


def served_by(server_log: str, request_ids: set[str]) -> dict[str, int]:
    """Which worker (pid) answered each of ``request_ids``, from the JSON access lines."""
    found: dict[str, int] = {}
    for line in server_log.splitlines():
        if '"message": "request"' not in line:
            continue
        record = json.loads(line)["record"]
        if record["extra"]["request_id"] in request_ids:
            found[record["extra"]["request_id"]] = record["process"]["id"]
    return found


async def _spread(workers: Gateway, apps: Apps, rounds: int) -> tuple[str, list[str], list[Scrape]]:
    """Requests and scrapes on new connections each, so that both workers answer some."""
    app = await apps.add()
    ids: list[str] = []
    scrapes: list[Scrape] = []
    fresh = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=workers.url, limits=fresh, timeout=10) as http:
        for _ in range(rounds):
            body = {"prompt": "hi", "stream": False}
            answer = await http.post("/ask", json=body, headers=app.auth)
            assert answer.status_code == 200, answer.text
            ids.append(answer.headers["x-request-id"])
    async with httpx.AsyncClient(base_url=workers.url, limits=fresh, timeout=10) as http:
        for _ in range(rounds):
            response = await http.get("/metrics")
            ids.append(response.headers["x-request-id"])
            scrapes.append(parse_exposition(response.text))
    return app.name, ids, scrapes


def test_with_several_workers_every_scrape_counts_every_workers_requests(
    workers: Gateway, fake: Fake, issued_secrets: set[str]
) -> None:
    rounds = 12
    apps = Apps(workers, fake, issued_secrets, "workers")
    name, ids, scrapes = anyio.run(_spread, workers, apps, rounds)
    deadline = time.monotonic() + 5
    while len(pids := served_by(workers.server.stderr(), set(ids))) < len(ids):
        assert time.monotonic() < deadline, "access lines missing"
        time.sleep(0.05)
    asks, metrics = ids[:rounds], ids[rounds:]
    if len({pids[i] for i in asks}) < 2 or len({pids[i] for i in metrics}) < 2:
        pytest.skip("the kernel gave every connection to one worker: nothing to aggregate")
    for answer in scrapes:
        assert answer.total("orchestra_requests_total", app=name) == rounds
        # The two workers' memory together: more than one gateway process alone uses.
        assert answer.value("process_resident_memory_bytes") > 2 * 50_000_000
        assert answer.value("process_cpu_seconds_total") > 0
        assert answer.value("python_info", **PYTHON_INFO) == 1


# --- promtool -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        message = "promtool is not installed (Debian: apt-get install prometheus)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI must have it")
        pytest.skip(message)
    return found


def run_promtool(promtool: str, *args: str, cwd: Path = ROOT) -> str:
    result = subprocess.run(
        [promtool, *args], capture_output=True, text=True, timeout=60, check=False, cwd=cwd
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"promtool {' '.join(args)}:\n{output}"
    return output


def test_promtool_accepts_the_rules(promtool: str) -> None:
    output = run_promtool(promtool, "check", "rules", str(ALERTS))
    assert f"SUCCESS: {len(alert_rules())} rules found" in output, output


def test_promtool_accepts_the_scrape_config(promtool: str) -> None:
    output = run_promtool(promtool, "check", "config", str(PROMETHEUS))
    assert "SUCCESS" in output and "alerts.yml" in output, output


def test_promtool_fails_a_broken_rule(promtool: str, tmp_path: Path) -> None:
    """The check is not a rubber stamp."""
    broken = tmp_path / "broken.yml"
    broken.write_text(ALERTS.read_text().replace("[5m]", "[5m", 1))
    result = subprocess.run(
        [promtool, "check", "rules", str(broken)], capture_output=True, timeout=60, check=False
    )
    assert result.returncode != 0


def test_the_alerts_fire_on_the_series_the_gateway_exposes(promtool: str, tmp_path: Path) -> None:
    """promtool's rule unit tests, on series named and labelled as /metrics has them."""
    timeouts = 'orchestra_upstream_errors_total{app="bad",kind="upstream_timeout"}'
    dependency_summary = "Orchestra's redis is down (or the gateway itself is)"
    req = 'orchestra_requests_total{route="/ask",app="%s",outcome="%s",status_class="%s"}'
    tests = {
        "rule_files": [str(ALERTS)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    # "bad": 10% of its requests fail with a 5xx; "good": 1%.
                    {"series": req % ("bad", "completed", "2xx"), "values": "0+54x30"},
                    {"series": req % ("bad", "upstream_error", "5xx"), "values": "0+6x30"},
                    {"series": req % ("good", "completed", "2xx"), "values": "0+594x30"},
                    {"series": req % ("good", "upstream_error", "5xx"), "values": "0+6x30"},
                    {
                        "series": 'orchestra_quota_rejections_total{app="bad",limit="rpm"}',
                        "values": "0+120x30",
                    },
                    {
                        "series": timeouts,
                        "values": "0+6x30",
                    },
                    {"series": 'orchestra_dependency_up{dependency="redis"}', "values": "1 1 0x30"},
                    {"series": 'orchestra_dependency_up{dependency="database"}', "values": "1x30"},
                    {"series": 'up{job="orchestra"}', "values": "1x30"},
                    *NEWER_SERIES,
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "15m",
                        "alertname": "OrchestraHighErrorRate",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "warning", "app": "bad"},
                                "exp_annotations": {
                                    "summary": "More than 5% of bad's requests fail with a 5xx"
                                },
                            }
                        ],
                    },
                    {
                        "eval_time": "15m",
                        "alertname": "OrchestraQuotaRejectionsSpike",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "info", "app": "bad", "limit": "rpm"},
                                "exp_annotations": {
                                    "summary": "bad hits its rpm quota more than once a second"
                                },
                            }
                        ],
                    },
                    {
                        "eval_time": "15m",
                        "alertname": "OrchestraDependencyDown",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "critical", "dependency": "redis"},
                                "exp_annotations": {"summary": dependency_summary},
                            }
                        ],
                    },
                    # "bad" still completes requests: its upstream is not down.
                    {"eval_time": "15m", "alertname": "OrchestraUpstreamDown", "exp_alerts": []},
                    {"eval_time": "15m", "alertname": "OrchestraRecordsDropped", "exp_alerts": []},
                    *newer_alert_tests(),
                ],
            }
        ],
    }
    unit = tmp_path / "alerts_test.yml"
    unit.write_text(yaml.safe_dump(tests, sort_keys=False))
    output = run_promtool(promtool, "test", "rules", str(unit), cwd=tmp_path)
    assert "SUCCESS" in output, output


def _stream_series(name: str, instance: str, values: str) -> dict[str, str]:
    return {"series": f'{name}{{instance="{instance}",job="orchestra"}}', "values": values}


# Sessions, per-user limits and streams: "bad" and gw-1 misbehave, "good" and gw-2 do not.
NEWER_SERIES = [
    {"series": 'orchestra_sessions_total{app="bad",outcome="minted"}', "values": "0+60x45"},
    {"series": 'orchestra_sessions_total{app="bad",outcome="refused"}', "values": "0+60x45"},
    {"series": 'orchestra_sessions_total{app="good",outcome="minted"}', "values": "0+60x45"},
    {"series": 'orchestra_sessions_total{app="good",outcome="refused"}', "values": "0+1x45"},
    # Half of bad's requests (1 a second) hit alice's or bob's own limit; good's almost none.
    {
        "series": 'orchestra_quota_rejections_total{app="bad",limit="user_rpm"}',
        "values": "0+30x45",
    },
    {
        "series": 'orchestra_quota_rejections_total{app="good",limit="user_tpm"}',
        "values": "0+1x45",
    },
    _stream_series("orchestra_streams_evicted_total", "gw-1:8000", "0+2x45"),
    _stream_series("orchestra_streams_evicted_total", "gw-2:8000", "0x45"),
    _stream_series("orchestra_streams_detached_total", "gw-1:8000", "0+4x45"),
    _stream_series("orchestra_streams_expired_total", "gw-1:8000", "0+3x45"),
    _stream_series("orchestra_streams_detached_total", "gw-2:8000", "0+10x45"),
    _stream_series("orchestra_streams_expired_total", "gw-2:8000", "0+1x45"),
]


def newer_alert_tests() -> list[dict[str, Any]]:
    """Each newer alert fires for the misbehaving app or instance only, with its runbook."""
    rules = {rule["alert"]: rule for rule in alert_rules()}

    def fires(alert: str, at: str, labels: dict[str, str], summary: str) -> dict[str, Any]:
        rule = rules[alert]
        annotations = {"summary": summary, "description": rule["annotations"]["description"]}
        expected = {"exp_labels": {**rule["labels"], **labels}, "exp_annotations": annotations}
        return {"eval_time": at, "alertname": alert, "exp_alerts": [expected]}

    return [
        fires(
            "OrchestraSessionRefusalsSpike",
            "25m",
            {"app": "bad"},
            "bad: more than a quarter of its session requests are refused",
        ),
        fires(
            "OrchestraUserQuotaRejectionsHigh",
            "25m",
            {"app": "bad"},
            "bad: over 10% of its requests hit a per-user limit",
        ),
        fires(
            "OrchestraStreamsEvicted",
            "25m",
            {"instance": "gw-1:8000"},
            "gw-1:8000 evicts ended answers to stay under its memory bound",
        ),
        fires(
            "OrchestraStreamsExpiring",
            "40m",
            {"instance": "gw-1:8000"},
            "gw-1:8000: most detached answers are never resumed",
        ),
        # Not yet: the detach rule waits 30 minutes.
        {"eval_time": "25m", "alertname": "OrchestraStreamsExpiring", "exp_alerts": []},
    ]


def test_no_rule_file_is_left_out() -> None:
    listed = yaml.safe_load(PROMETHEUS.read_text())["rule_files"]
    on_disk = sorted(p.name for p in PROMETHEUS.parent.glob("*.yml") if p != PROMETHEUS)
    assert sorted(listed) == on_disk, textwrap.shorten(str((listed, on_disk)), 200)
