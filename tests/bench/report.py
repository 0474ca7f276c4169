"""Ratios, the targets of issue 8, and the printed table."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

Row = dict[str, Any]


def progress(message: str) -> None:
    """Progress goes to stderr, so stdout is only the table and the JSON line."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def _get(result: Row, metric: str, pct: str) -> float | None:
    value = (result.get(metric) or {}).get(pct)
    return None if value is None else float(value)


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a - b, 3)


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else round(a / b, 3)


def ratios(direct: Row, gateway: Row) -> Row:
    """Gateway over direct, measured in the same run."""
    return {
        "throughput_ratio": _ratio(gateway.get("rps"), direct.get("rps")),
        "added_ttfb_p50_ms": _diff(_get(gateway, "ttfb_ms", "p50"), _get(direct, "ttfb_ms", "p50")),
        "added_ttfd_p50_ms": _diff(_get(gateway, "ttfd_ms", "p50"), _get(direct, "ttfd_ms", "p50")),
        "added_ttfd_p99_ms": _diff(_get(gateway, "ttfd_ms", "p99"), _get(direct, "ttfd_ms", "p99")),
        "total_p99_ratio": _ratio(
            _get(gateway, "total_ms", "p99"), _get(direct, "total_ms", "p99")
        ),
    }


def one_line(row: Row) -> str:
    gw, direct, r = row["gateway"], row["direct"], row["ratios"]
    return (
        f"  {row['scenario']}: direct {direct['rps']}/s, gateway {gw['rps']}/s "
        f"(x{_fmt(r['throughput_ratio'])}), +ttfd p50 {_fmt(r['added_ttfd_p50_ms'])} ms "
        f"p99 {_fmt(r['added_ttfd_p99_ms'])} ms, total p99 x{_fmt(r['total_p99_ratio'])}, "
        f"errors {direct['errors']}/{gw['errors']} {gw['error_kinds'] or ''}, "
        f"gateway cpu {gw['server_cpu_pct']}%, noise {gw.get('foreign_cpu_pct')}%"
    )


def _fmt(value: object, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:.0f}"
        if abs(value) >= 100:
            return f"{value:.1f}"
        return f"{value:.{digits}f}"
    return str(value)


_COLUMNS: list[tuple[str, int, Callable[[Row, Row, Row], object]]] = [
    ("req", 6, lambda _row, t, _r: t["requests"]),
    ("err", 4, lambda _row, t, _r: t["errors"]),
    ("req/s", 8, lambda _row, t, _r: t["rps"]),
    ("ttfb50", 7, lambda _row, t, _r: _get(t, "ttfb_ms", "p50")),
    ("ttfb99", 7, lambda _row, t, _r: _get(t, "ttfb_ms", "p99")),
    ("ttfd50", 7, lambda _row, t, _r: _get(t, "ttfd_ms", "p50")),
    ("ttfd90", 7, lambda _row, t, _r: _get(t, "ttfd_ms", "p90")),
    ("ttfd99", 7, lambda _row, t, _r: _get(t, "ttfd_ms", "p99")),
    ("tot50", 7, lambda _row, t, _r: _get(t, "total_ms", "p50")),
    ("tot90", 7, lambda _row, t, _r: _get(t, "total_ms", "p90")),
    ("tot99", 7, lambda _row, t, _r: _get(t, "total_ms", "p99")),
    ("srvCPU%", 7, lambda _row, t, _r: t.get("server_cpu_pct")),
    ("sys%", 5, lambda _row, t, _r: t.get("server_sys_pct")),
    ("srvMB", 6, lambda _row, t, _r: t.get("server_rss_mb") or t.get("rss_open_mb")),
    ("upCPU%", 6, lambda _row, t, _r: t.get("upstream_cpu_pct")),
    ("cliCPU%", 7, lambda _row, t, _r: t.get("client_cpu_pct_max")),
    ("noise%", 6, lambda _row, t, _r: t.get("foreign_cpu_pct")),
    ("probe99", 7, lambda _row, t, _r: _get(t, "probe_ms", "p99")),
    ("probeMax", 8, lambda _row, t, _r: _get(t, "probe_ms", "max")),
    ("thr x", 6, lambda _row, _t, r: r.get("throughput_ratio")),
    ("+ttfd50", 7, lambda _row, _t, r: r.get("added_ttfd_p50_ms")),
    ("+ttfd99", 7, lambda _row, _t, r: r.get("added_ttfd_p99_ms")),
    ("tot99 x", 7, lambda _row, _t, r: r.get("total_p99_ratio")),
]


def table(result: Row) -> str:
    """The results as a fixed-width table (times in ms), then the gateways and the verdicts."""
    name_width = max([len(row["scenario"]) for row in result["scenarios"]] + [8])
    head = f"{'scenario':<{name_width}} {'target':<7} " + " ".join(
        f"{title:>{width}}" for title, width, _ in _COLUMNS
    )
    lines = [head, "-" * len(head)]
    for row in result["scenarios"]:
        for target in ("direct", "gateway"):
            values = row[target]
            cells = []
            for _title, width, get in _COLUMNS:
                value = get(row, values, row["ratios"] if target == "gateway" else {})
                cells.append(f"{_fmt(value, 2):>{width}}")
            label = row["scenario"] if target == "direct" else ""
            lines.append(f"{label:<{name_width}} {target:<7} " + " ".join(cells))
        gw = row["gateway"]
        if "kb_per_stream" in gw:
            lines.append(
                f"{'':<{name_width}} streams: {gw['max_open_at_once']} of {gw['streams']} open "
                f"at once (the last started after {_fmt(gw['all_started_after_s'])} s); "
                f"gateway RSS idle {gw['rss_idle_mb']} MB, with them open "
                f"{gw['rss_open_mb']} MB, after {gw['rss_after_mb']} MB: "
                f"{gw['kb_per_stream']} KB per open stream, "
                f"{gw.get('kb_per_request_in_flight')} KB per request in flight "
                f"({gw.get('in_flight_then')}) (fake: {row['direct'].get('kb_per_stream')} KB)"
            )
    lines.append("")
    lines.append(f"orchestra --help: {result.get('cli_help_ms')} ms (best of 3)")
    for info in result["gateways"]:
        if "skipped" in info:
            lines.append(f"gateway {info['backend']}: skipped ({info['skipped']})")
            continue
        extra = ""
        if info["backend"] == "redis":
            extra = f", redis used by the gateway: {info.get('redis_used')}"
        lines.append(
            f"gateway {info['backend']}: ready in {info.get('ready_s')} s, RSS at ready "
            f"{info.get('rss_ready_mb')} MB, idle after warm-up {info.get('rss_idle_mb')} MB "
            f"(idle CPU {info.get('idle_cpu_pct')}%), at the end {info.get('rss_end_mb')} MB{extra}"
        )
    for info in result["gateways"]:
        for failure in info.get("warm_up_failures", []):
            lines.append(f"  WARNING {info['backend']} gateway failed a warm-up request: {failure}")
    lines.append("")
    lines.append("targets (issue 8):")
    for verdict in result.get("verdicts", []):
        mark = {True: "PASS", False: "FAIL", None: "n/a "}[verdict["pass"]]
        lines.append(
            f"  {mark} {verdict['target']}: {_fmt(verdict['value'])} "
            f"(limit {verdict['limit']}; {verdict['scenario']})"
        )
    lines.append(f"elapsed {result.get('elapsed_s')} s")
    return "\n".join(lines)


def _at_least(limit: float) -> Callable[[float], bool]:
    return lambda value: value >= limit


def _at_most(limit: float) -> Callable[[float], bool]:
    return lambda value: value <= limit


def _rows(result: Row, pattern: Callable[[Row], bool]) -> list[Row]:
    return [row for row in result["scenarios"] if pattern(row)]


def verdicts(result: Row) -> list[Row]:
    """Each target of issue 8 that this run measured: value, limit, pass."""
    out: list[Row] = []

    def add(target: str, value: float | None, limit: str, ok: bool | None, scenario: str) -> None:
        out.append(
            {"target": target, "value": value, "limit": limit, "pass": ok, "scenario": scenario}
        )

    def check(value: float | None, test: Callable[[float], bool]) -> bool | None:
        return None if value is None else test(value)

    for row in _rows(result, lambda r: r["concurrency"] == 1 and r["mode"] == "stream"):
        r = row["ratios"]
        name = row["scenario"]
        p50, p99 = r["added_ttfd_p50_ms"], r["added_ttfd_p99_ms"]
        add("added TTFD p50 at c=1 (ms)", p50, "<= 1", check(p50, lambda v: v <= 1), name)
        add("added TTFD p99 at c=1 (ms)", p99, "<= 3", check(p99, lambda v: v <= 3), name)
    for row in _rows(
        result, lambda r: r["concurrency"] == 200 and r["token_ms"] == 20 and r["mode"] == "stream"
    ):
        r = row["ratios"]
        thr, tot = r["throughput_ratio"], r["total_p99_ratio"]
        name = row["scenario"]
        add("throughput / direct, 20 ms c=200", thr, ">= 0.95", check(thr, _at_least(0.95)), name)
        add("total p99 / direct, 20 ms c=200", tot, "<= 1.10", check(tot, _at_most(1.10)), name)
        probe = _get(row["gateway"], "probe_ms", "max")
        add("probe max (loop lag bound), ms", probe, "< 50", check(probe, lambda v: v < 50), name)
    for row in _rows(result, lambda r: r["concurrency"] == 50 and r["token_ms"] == 0):
        thr = row["ratios"]["throughput_ratio"]
        add(
            f"throughput / direct, 0 ms c=50 {row['mode']}",
            thr,
            ">= 0.40",
            check(thr, lambda v: v >= 0.40),
            row["scenario"],
        )
    for row in _rows(result, lambda r: "kb_per_stream" in r["gateway"]):
        gw = row["gateway"]
        kb = gw["kb_per_stream"]
        where = f"{row['scenario']}, {gw['max_open_at_once']} of {gw['streams']} open at once"
        add("RSS per open stream (KB)", kb, "<= 64", check(kb, lambda v: v <= 64), where)
    for info in result["gateways"]:
        if "skipped" in info:
            continue
        backend = info["backend"]
        idle = info.get("rss_idle_mb")
        add("idle RSS (MB)", idle, "<= 120", check(idle, lambda v: v <= 120), f"{backend} gateway")
        ready = info.get("ready_s")
        add("start to ready (s)", ready, "< 2", check(ready, lambda v: v < 2), f"{backend} gateway")
    help_ms = result.get("cli_help_ms")
    add("orchestra --help (ms)", help_ms, "< 300", check(help_ms, lambda v: v < 300), "cli")
    return out
