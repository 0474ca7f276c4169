"""The processes under test: ports, start and stop, readiness, and /proc figures (RSS, CPU)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support import cli
from tests.support.processes import HOST, ORCHESTRA, free_port

__all__ = ["HOST", "free_port"]

_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")
_REPO = Path(__file__).resolve().parents[2]


def orchestra_bin() -> str:
    """The ``orchestra`` console script of the running venv."""
    return str(ORCHESTRA)


def base_env(**extra: str) -> dict[str, str]:
    """The environment for child processes: ours without any ORCHESTRA_* setting, plus ``extra``.

    Inherited ORCHESTRA_* variables (a developer's database or Redis) must not leak into the
    servers under test.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRA_")}
    env.update(extra)
    return env


#: Scheduling priority for every process the benchmark starts (``--nice``); 0 leaves it.
NICE = {"value": 0}


def renice(pid: int) -> None:
    """Apply ``--nice`` to ``pid`` (negative values need root)."""
    if NICE["value"]:
        os.setpriority(os.PRIO_PROCESS, pid, NICE["value"])


def raise_fd_limit() -> int:
    """Raise the soft open-files limit to the hard one (children inherit it); returns it."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


@dataclass(frozen=True, slots=True)
class ProcSample:
    cpu_s: float  # user + system CPU since the process started
    rss_bytes: int
    at: float  # time.monotonic()
    sys_s: float = 0.0  # the system (kernel) part of cpu_s: syscalls, loopback TCP


def sample(pids: Sequence[int]) -> ProcSample:
    """CPU and RSS summed over ``pids`` (a process that has gone counts as zero)."""
    cpu = system = 0.0
    rss = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            statm = Path(f"/proc/{pid}/statm").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        cpu += (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime, stime
        system += int(fields[12]) / _CLK_TCK
        rss += int(statm.split()[1]) * _PAGE
    return ProcSample(cpu_s=cpu, rss_bytes=rss, at=time.monotonic(), sys_s=system)


def machine_busy_s() -> float:
    """CPU seconds all processes of the machine have used since boot (all cores)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    ticks = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
    return (sum(ticks) - ticks[3] - ticks[4]) / _CLK_TCK


def tcp_traffic(pids: Sequence[int], port: int) -> tuple[int, int, int]:
    """``(bytes sent, bytes received, data segments sent)`` summed over the open TCP connections
    of ``pids`` to ``port`` (from ``ss -tinp``): e.g. the gateway's Redis traffic, which other
    Redis clients on the machine do not disturb."""
    done = subprocess.run(
        ["ss", "-tinpH", f"( dport = :{port} )"], capture_output=True, text=True, check=False
    )
    wanted = {f"pid={pid}," for pid in pids}
    sent = received = segments = 0
    lines = done.stdout.splitlines()
    for head, info in zip(lines[::2], lines[1::2], strict=False):
        if not any(mark in head for mark in wanted):
            continue
        fields = dict(item.split(":", 1) for item in info.split() if ":" in item)
        sent += int(fields.get("bytes_sent", "0"))
        received += int(fields.get("bytes_received", "0"))
        segments += int(fields.get("data_segs_out", "0"))
    return sent, received, segments


def load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def cpu_percent(first: ProcSample, last: ProcSample) -> float:
    """CPU use between two samples, in % of one core."""
    wall = last.at - first.at
    return 0.0 if wall <= 0 else round(100 * (last.cpu_s - first.cpu_s) / wall, 1)


def sys_percent(first: ProcSample, last: ProcSample) -> float:
    """The kernel's part of ``cpu_percent`` (system time), in % of one core."""
    wall = last.at - first.at
    return 0.0 if wall <= 0 else round(100 * (last.sys_s - first.sys_s) / wall, 1)


@dataclass(slots=True)
class Server:
    """A started server: its process(es) and where to reach it."""

    name: str
    port: int
    procs: list[subprocess.Popen[bytes]]
    log: Path
    ready_s: float = 0.0

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs)

    def stop(self, timeout: float = 10.0) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def log_size(self) -> int:
        with contextlib.suppress(OSError):
            return self.log.stat().st_size
        return 0

    def log_errors(self, since: int, limit: int = 3) -> list[str]:
        """The first distinct ERROR/CRITICAL/Traceback lines logged after byte ``since``."""
        found: list[str] = []
        with contextlib.suppress(OSError), self.log.open("rb") as log:
            log.seek(since)
            for raw in log:
                line = raw.decode(errors="replace").strip()
                if any(mark in line for mark in ("ERROR", "CRITICAL", "Traceback", "Error:")):
                    short = line[:300]
                    if short not in found:
                        found.append(short)
                    if len(found) >= limit:
                        break
        return found

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


def _spawn(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        proc = subprocess.Popen(
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=_REPO
        )
    renice(proc.pid)
    return proc


def wait_ready(server: Server, url: str, timeout: float, started: float) -> None:
    """Poll ``url`` until it answers 200; sets ``server.ready_s`` (seconds since ``started``)."""
    deadline = started + timeout
    with httpx.Client(timeout=1.0, trust_env=False) as http:
        while time.monotonic() < deadline:
            if not server.alive():
                raise RuntimeError(f"{server.name} exited:\n{server.log_tail()}")
            try:
                if http.get(url).status_code == 200:
                    server.ready_s = round(time.monotonic() - started, 3)
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.02)
    raise RuntimeError(f"{server.name} not ready after {timeout} s:\n{server.log_tail()}")


def start_fake(workdir: Path, *, workers: int, tokens: int) -> Server:
    """The project's fake OpenAI server: ``workers`` processes sharing one port (SO_REUSEPORT)."""
    port = free_port()
    log = workdir / "fake.log"
    cmd = [sys.executable, "-m", "tests.bench.fake_server", "--port", str(port)]
    cmd += ["--tokens", str(tokens)]
    started = time.monotonic()
    procs = [_spawn(cmd, base_env(), log) for _ in range(workers)]
    server = Server("fake", port, procs, log)
    url = f"http://{HOST}:{port}/_fake/health"
    wait_ready(server, url, 20.0, started)
    # Each worker listens before it imports anything (see fake_server), so a connection that the
    # kernel hands to a worker still starting waits instead of failing; touch them all anyway.
    with httpx.Client(timeout=20.0, trust_env=False) as http:
        for _ in range(8 * workers):
            http.get(url, headers={"Connection": "close"})
    return server


def start_gateway(
    workdir: Path, home: Path, *, tag: str, env: dict[str, str], wrap: Sequence[str] = ()
) -> Server:
    """``orchestra serve`` (one worker) in ``home``; ``wrap`` prefixes the command (a profiler)."""
    port = free_port()
    log = workdir / f"gateway-{tag}.log"
    cmd = [*wrap, orchestra_bin(), "serve", "--port", str(port), "--workers", "1"]
    started = time.monotonic()
    proc = _spawn(cmd, base_env(ORCHESTRA_HOME=str(home), **env), log)
    server = Server(f"gateway ({tag})", port, [proc], log)
    wait_ready(server, f"http://{HOST}:{port}/status", 30.0, started)
    return server


def run_cli(
    home: Path, args: list[str], stdin: str | None = None, env: dict[str, str] | None = None
) -> str:
    """Run an admin command in ``home`` (``env``: more ORCHESTRA_* values); its stdout."""
    child = base_env(ORCHESTRA_HOME=str(home), **(env or {}))
    return cli.run_cli(args, child, input=stdin, cwd=_REPO)


def time_command(args: list[str], runs: int = 3) -> float:
    """Best wall time in ms of ``orchestra ARGS`` over ``runs`` runs."""
    best = float("inf")
    for _ in range(runs):
        started = time.monotonic()
        subprocess.run(
            [orchestra_bin(), *args], env=base_env(), capture_output=True, check=False, cwd=_REPO
        )
        best = min(best, time.monotonic() - started)
    return round(best * 1000, 1)
