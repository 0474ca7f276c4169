"""Profile the gateway during a measurement with py-spy, and summarise where its CPU goes.

py-spy (``pip install py-spy``; optional) attaches to the running gateway for the measurement
window and writes collapsed stacks (``--format raw``) plus a flame graph SVG. The summary lists
the functions with the most samples on top of the stack ("self"), the gateway's own functions
by inclusive samples, and self samples grouped by library, which is usually the telling view:
how much goes to starlette, anyio, httpx, loguru, json, pydantic, SQLAlchemy...
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def py_spy() -> str | None:
    """The py-spy executable of this venv (or on PATH), if installed."""
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


@dataclass(slots=True)
class Recording:
    raw: Path
    svg: Path
    procs: list[subprocess.Popen[bytes]]

    def wait(self, timeout: float) -> None:
        for proc in self.procs:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def record(
    pid: int, seconds: float, out_dir: Path, tag: str, rate: int = 200, gil: bool = False
) -> Recording:
    """Start two py-spy recorders (raw stacks and a flame graph) on ``pid`` for ``seconds``;
    ``gil``: sample only the thread holding the GIL (where the Python CPU goes)."""
    exe = py_spy()
    if exe is None:
        raise RuntimeError("py-spy is not installed: .venv/bin/pip install py-spy")
    duration = str(max(1, round(seconds)))
    raw, svg = out_dir / f"profile-{tag}.txt", out_dir / f"profile-{tag}.svg"
    procs = []
    for fmt, path in (("raw", raw), ("flamegraph", svg)):
        cmd = [exe, "record", "--pid", str(pid), "--duration", duration, "--rate", str(rate)]
        cmd += ["--format", fmt, "--output", str(path), "--nonblocking"]
        if gil:
            cmd.append("--gil")
        procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return Recording(raw=raw, svg=svg, procs=procs)


def _frame(text: str) -> tuple[str, str]:
    """``(function, file)`` of one collapsed-stack frame."""
    match = _FRAME.match(text.strip())
    if match is None:
        return text.strip(), ""
    return match["func"], match["file"]


def _short(path: str) -> str:
    for marker in ("/site-packages/", "/work/main/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path.rsplit("/lib/", 1)[-1]


def _package(path: str) -> str:
    """The top-level package of a frame's file (py-spy prints module-relative paths)."""
    path = _short(path)
    if path.startswith("gateway/"):
        return "gateway (ours)"
    head, sep, _ = path.partition("/")
    if not sep:
        return head.removesuffix(".py")
    return head


def summarise(raw: Path, top: int = 15) -> dict[str, object]:
    """Self and inclusive sample shares from a py-spy ``--format raw`` file."""
    self_counts: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame(part) for part in stack.split(";")]
        frames = [(func, path) for func, path in frames if path]  # drop process/thread entries
        if not frames:
            continue
        total += count
        func, path = frames[-1]
        self_counts[f"{_short(path)}:{func}"] += count
        packages[_package(path)] += count
        seen = {f"{_short(p)}:{f}" for f, p in frames if _short(p).startswith("gateway/")}
        for name in seen:
            ours[name] += count

    def shares(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(name, round(100 * n / total, 1)) for name, n in counter.most_common(top)]

    return {
        "samples": total,
        "self_pct": shares(self_counts),
        "gateway_inclusive_pct": shares(ours),
        "by_package_self_pct": shares(packages),
    }


def render(summary: dict[str, object]) -> str:
    lines = [f"py-spy samples: {summary['samples']}"]
    for key, title in (
        ("by_package_self_pct", "self time by package"),
        ("gateway_inclusive_pct", "gateway functions, inclusive"),
        ("self_pct", "top functions, self"),
    ):
        lines.append(f"  {title}:")
        rows = summary[key]
        assert isinstance(rows, list)
        lines += [f"    {pct:5.1f}%  {name}" for name, pct in rows]
    return "\n".join(lines)
