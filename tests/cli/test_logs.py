"""`orchestra logs tail|prune`: records from any replica, filters, output, retention, Ctrl+C.

The follow tests are real: two ``orchestra serve`` processes share one SQLite database (in front
of one ``orchestra fake-openai``), ``orchestra logs tail --follow`` runs as a subprocess, and
each request's record must reach the tail's stdout within 2 s of the answer. Ctrl+C is a real
SIGINT. The filter, format and prune tests run the CLI in-process on records written through
the storage layer (``InteractionRecord`` rows, as the gateway's recorder writes them).
"""

from __future__ import annotations

import json
import queue
import re
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from gateway.services.interactions import InteractionRecord
from gateway.storage import request_logs
from gateway.storage.database import Database
from tests.cli.conftest import Orchestra, add_app, fails, ok, with_database
from tests.conftest import POSTGRES_URL, PostgresSchema
from tests.gateway.http.conftest import (
    ADMIN_TOKEN,
    ORCHESTRA,
    AppHandle,
    Apps,
    Fake,
    Gateway,
    child_env,
    free_port,
    gateway_settings,
    init_home,
    spawn_fake,
    spawn_gateway,
)
from tests.support.processes import stopping, wait_http

# gateway/storage/request_logs.py calls SQLModel's AsyncSession.execute (deprecated in favour of
# exec, a warning only): in-process, that warning would be an error here.
pytestmark = pytest.mark.filterwarnings(r"ignore:\s*.*session\.exec\(\):DeprecationWarning")

#: The issue's bound: a record is in the tail this long after its request ended.
TAIL_BOUND_S = 2.0
#: How long the tail process may take to start (imports, database) and print its backlog.
TAIL_START_S = 30.0


# --- two replicas on one database -----------------------------------------------------------


@dataclass
class Replicas:
    home: Path
    cli_env: dict[str, str]
    gateways: list[Gateway]
    apps: list[AppHandle]


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    root = tmp_path_factory.mktemp("tail")
    logs, home = root / "logs", root / "home"
    with stopping() as started:
        fake = spawn_fake("fake", logs, "--tokens", "4")
        started.append(fake)
        init_home(home)
        settings = gateway_settings(home)
        servers = [spawn_gateway(f"gateway-{i}", settings, logs) for i in range(2)]
        started += servers
        fake.wait_ready("/_fake/health")
        wait_http(servers, "/status")
        gateways = [Gateway.on_sqlite(s, home, settings) for s in servers]
        registry = Apps(gateways[0], Fake(fake), set(), "tail")

        async def register() -> list[AppHandle]:
            return [await registry.add(), await registry.add()]

        yield Replicas(home, child_env({"home": home}), gateways, anyio.run(register))


def ask(gateway: Gateway, app: AppHandle, prompt: str) -> tuple[str, float]:
    """A non-streamed /ask; (request id, when its answer was complete)."""
    with httpx.Client(base_url=gateway.url, timeout=10) as http:
        response = http.post("/ask", json={"prompt": prompt, "stream": False}, headers=app.auth)
    return response.headers["x-request-id"], time.monotonic()


def _default_sigint() -> None:
    """In the child, before exec: Ctrl+C at its default, whatever this process inherited.

    A suite started in the background of a non-interactive shell has SIGINT ignored, and an
    ignored signal stays ignored across exec: the tail would never see the tests' Ctrl+C.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Tail:
    """``orchestra logs tail ARGS`` as a child process, its stdout read line by line."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [str(ORCHESTRA), "logs", "tail", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            preexec_fn=_default_sigint,
        )
        self._lines: queue.Queue[tuple[float, str | None]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put((time.monotonic(), line.rstrip("\n")))
        self._lines.put((time.monotonic(), None))

    def next_line(self, deadline: float) -> tuple[float, str]:
        try:
            at, line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(
                f"nothing from the tail in time; stderr: {self.stderr()}"
            ) from None
        assert line is not None, f"the tail ended ({self.process.poll()}): {self.stderr()}"
        return at, line

    def next_record(self, deadline: float) -> tuple[float, dict[str, Any]]:
        at, line = self.next_line(deadline)
        record: dict[str, Any] = json.loads(line)  # --json: every line is one object
        self.seen.append(record)
        return at, record

    def wait_for(self, request_id: str, deadline: float) -> tuple[float, dict[str, Any]]:
        while True:
            at, record = self.next_record(deadline)
            if record["request_id"] == request_id:
                return at, record

    def stderr(self) -> str:
        if self.process.poll() is None or self.process.stderr is None:
            return "(still running)"
        return self.process.stderr.read()

    def interrupt(self) -> tuple[int, str]:
        """Ctrl+C: SIGINT, then its exit code and stderr."""
        self.process.send_signal(signal.SIGINT)
        try:
            code = self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            raise AssertionError("the tail did not stop on SIGINT") from None
        return code, self.stderr()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


def assert_clean_exit(code: int, stderr: str) -> None:
    assert code == 0, stderr
    assert "Traceback" not in stderr and "Aborted" not in stderr, stderr


def follow_both(replicas: Replicas, tail: Tail, count: int) -> list[str]:
    """``count`` requests spread over both replicas; each must be in the tail within the bound."""
    ids = []
    for i in range(count):
        gateway, app = replicas.gateways[i % 2], replicas.apps[i % 2]
        prompt = "[fail:500]" if i == count - 1 else f"tail {i} {secrets.token_hex(3)}"
        request_id, answered = ask(gateway, app, prompt)
        arrived, record = tail.wait_for(request_id, answered + TAIL_BOUND_S)
        assert arrived - answered < TAIL_BOUND_S
        assert record["app"] == app.name, record
        expected = "upstream_error" if prompt == "[fail:500]" else "completed"
        assert record["outcome"] == expected, record
        ids.append(request_id)
    return ids


def test_follow_json_prints_every_replicas_records_within_two_seconds(
    replicas: Replicas,
) -> None:
    first, _ = ask(replicas.gateways[0], replicas.apps[0], "before the tail")
    tail = Tail(["--follow", "--json", "-n", "1"], replicas.cli_env)
    try:
        # The backlog (-n 1) is the latest record: the tail is reading the database now.
        _, backlog = tail.next_record(time.monotonic() + TAIL_START_S)
        assert backlog["request_id"] == first, backlog
        ids = follow_both(replicas, tail, 6)
        assert [r["request_id"] for r in tail.seen] == [first, *ids]  # each once, in order
        assert_clean_exit(*tail.interrupt())
    finally:
        tail.close()


def test_follow_with_filters_prints_only_the_matching_records(replicas: Replicas) -> None:
    app = replicas.apps[1]
    args = ["--follow", "--json", "--app", app.name, "--outcome", "upstream_error"]
    tail = Tail([*args, "-n", "0", "--since", "1h"], replicas.cli_env)

    def round_of_requests(turn: int) -> tuple[str, float]:
        """Another app's failure, this app's success, then the one record that matches."""
        ask(replicas.gateways[0], replicas.apps[0], "[fail:500]")
        ask(replicas.gateways[1], app, "fine")
        return ask(replicas.gateways[turn % 2], app, "[fail:500]")

    try:
        # With -n 0 there is no backlog to show that the tail is reading: send rounds until
        # one of their records comes out.
        wanted: set[str] = set()
        deadline = time.monotonic() + TAIL_START_S
        for turn in range(100):
            request_id, answered = round_of_requests(turn)
            wanted.add(request_id)
            try:
                _, first = tail.next_record(answered + TAIL_BOUND_S)
            except AssertionError:
                assert time.monotonic() < deadline, "the filtered tail printed nothing"
                continue
            assert first["request_id"] in wanted, first
            break
        # Reading now: every matching record, and nothing else.
        for turn in range(2):
            request_id, answered = round_of_requests(turn)
            while True:
                _, record = tail.next_record(answered + TAIL_BOUND_S)
                if record["request_id"] not in wanted:  # not a late one of the first rounds
                    break
            assert record["request_id"] == request_id, record
            wanted.add(request_id)
        assert_clean_exit(*tail.interrupt())
        for record in tail.seen:
            assert (record["app"], record["outcome"]) == (app.name, "upstream_error"), record
    finally:
        tail.close()


def test_follow_over_url_streams_the_gateways_records(replicas: Replicas) -> None:
    first, _ = ask(replicas.gateways[1], replicas.apps[1], "before the remote tail")
    args = ["--url", replicas.gateways[0].url, "--token", ADMIN_TOKEN, "--follow", "--json"]
    tail = Tail([*args, "-n", "1"], {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
    try:
        _, backlog = tail.next_record(time.monotonic() + TAIL_START_S)
        assert backlog["request_id"] == first, backlog
        follow_both(replicas, tail, 4)  # the records of both replicas, through one's /logs
        assert_clean_exit(*tail.interrupt())
    finally:
        tail.close()


def test_one_shot_over_url_reads_the_latest_records_oldest_first(
    replicas: Replicas, orchestra: Orchestra
) -> None:
    app = replicas.apps[0]
    url = replicas.gateways[1].url

    def latest() -> list[str]:
        result = ok(
            orchestra(
                *("logs", "tail", "--url", url, "--token", ADMIN_TOKEN),
                *("--app", app.name, "-n", "1", "--json"),
            )
        )
        return [json.loads(line)["request_id"] for line in result.stdout.splitlines()]

    # Each replica writes its records in its own batches: one answer's record is awaited before
    # the next request, so that the order the records were written in is the requests' order.
    ids: list[str] = []
    for i in range(3):
        ids.append(ask(replicas.gateways[i % 2], app, f"remote {i}")[0])
        written_by = time.monotonic() + 5
        while latest() != ids[-1:] and time.monotonic() < written_by:
            time.sleep(0.05)
    deadline = time.monotonic() + 5
    while True:
        result = ok(
            orchestra(
                *("logs", "tail", "--url", url, "--token", ADMIN_TOKEN),
                *("--app", app.name, "-n", "3", "--json"),
            )
        )
        records = [json.loads(line) for line in result.stdout.splitlines()]
        if [r["request_id"] for r in records] == ids or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert [r["request_id"] for r in records] == ids
    assert {r["app"] for r in records} == {app.name}
    human = ok(orchestra("logs", "tail", "--url", url, "--token", ADMIN_TOKEN, "-n", "1"))
    assert ids[-1] in human.stdout and app.name in human.stdout


def test_over_url_a_missing_or_wrong_token_or_a_dead_gateway_is_refused(
    replicas: Replicas, orchestra: Orchestra
) -> None:
    url = replicas.gateways[0].url
    fails(orchestra("logs", "tail", "--url", url), 1, "The gateway refused")
    fails(orchestra("logs", "tail", "--url", url, "--token", "adm_wrong"), 1, "The gateway refused")
    app_token = replicas.apps[0].token
    fails(
        orchestra("logs", "tail", "--url", url, "--token", app_token, "--app", "other"),
        1,
        "The gateway refused",
    )
    dead = f"http://127.0.0.1:{free_port()}"
    fails(orchestra("logs", "tail", "--url", dead, "--token", ADMIN_TOKEN), 1, "Cannot read")


# --- in-process, on records written through the storage layer -------------------------------


def record(
    app: dict[str, Any] | None,
    *,
    age: timedelta = timedelta(0),
    outcome: str = "completed",
    status: int = 200,
    error_code: str | None = None,
    ttft_ms: float | None = 12.4,
) -> InteractionRecord:
    return InteractionRecord(
        time=datetime.now(UTC) - age,
        request_id=f"req_{secrets.token_hex(8)}",
        route="/ask",
        outcome=outcome,
        http_status=status,
        app_id=None if app is None else app["id"],
        app_name=None if app is None else app["name"],
        model="gpt-4o-mini",
        error_code=error_code,
        prompt_tokens=7,
        completion_tokens=8,
        ttft_ms=ttft_ms,
        duration_ms=281.6,
        cost_usd=0.000006,
    )


def insert(*records: InteractionRecord) -> list[str]:
    async def write(db: Database) -> None:
        async with db.session() as session:
            await request_logs.append_logs(session, [r.row() for r in records])

    with_database(write)
    return [r.request_id for r in records]


def tail_json(orchestra: Orchestra, *args: str) -> list[dict[str, Any]]:
    result = ok(orchestra("logs", "tail", "--json", *args))
    return [json.loads(line) for line in result.stdout.splitlines()]


def ids_of(records: list[dict[str, Any]]) -> list[str]:
    return [r["request_id"] for r in records]


@pytest.fixture
def two_apps(orchestra: Orchestra, initialised: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    return add_app(orchestra, "alpha")["app"], add_app(orchestra, "beta")["app"]


def test_tail_filters_by_app_outcome_since_and_count(
    orchestra: Orchestra, two_apps: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    alpha, beta = two_apps
    old, a1, b1, a_rej, a2 = insert(
        record(alpha, age=timedelta(hours=2)),
        record(alpha, age=timedelta(minutes=3)),
        record(beta, age=timedelta(minutes=2)),
        record(alpha, age=timedelta(minutes=1), outcome="rejected", status=429),
        record(alpha),
    )
    assert ids_of(tail_json(orchestra)) == [old, a1, b1, a_rej, a2]  # oldest first
    assert ids_of(tail_json(orchestra, "-n", "2")) == [a_rej, a2]
    assert ids_of(tail_json(orchestra, "--lines", "1")) == [a2]
    assert tail_json(orchestra, "-n", "0") == []
    assert ids_of(tail_json(orchestra, "--app", "beta")) == [b1]
    assert ids_of(tail_json(orchestra, "--outcome", "rejected")) == [a_rej]
    assert ids_of(tail_json(orchestra, "--since", "10m")) == [a1, b1, a_rej, a2]
    assert ids_of(tail_json(orchestra, "--since", "90s")) == [a_rej, a2]
    assert ids_of(tail_json(orchestra, "--since", "3h", "--app", "alpha", "-n", "3")) == [
        a1,
        a_rej,
        a2,
    ]
    assert ids_of(tail_json(orchestra, "--app", "alpha", "--outcome", "completed")) == [
        old,
        a1,
        a2,
    ]
    assert tail_json(orchestra, "--outcome", "no-such-outcome") == []
    fails(orchestra("logs", "tail", "--app", "gamma"), 3, "No app named 'gamma'")


def test_tail_json_lines_are_whole_records(
    orchestra: Orchestra, two_apps: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    (request_id,) = insert(record(two_apps[0], outcome="upstream_error", status=502,
                                  error_code="upstream_error"))  # fmt: skip
    (line,) = tail_json(orchestra)
    assert line["request_id"] == request_id
    assert line["app"] == "alpha" and line["route"] == "/ask" and line["model"] == "gpt-4o-mini"
    assert line["outcome"] == "upstream_error" and line["http_status"] == 502
    assert line["error_code"] == "upstream_error"
    assert (line["prompt_tokens"], line["completion_tokens"]) == (7, 8)
    assert line["ttft_ms"] == 12.4 and line["duration_ms"] == 281.6
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", line["time"]), line["time"]


HUMAN_LINE = re.compile(
    r"^(?P<time>\d\d:\d\d:\d\d\.\d{3}) (?P<app>\S+) (?P<outcome>\S+) (?P<status>\d{3}) "
    r"(?P<tokens>\d+\+\d+) tok ttft (?P<ttft>\d+ms|-) (?P<duration>\d+)ms (?P<route>/\S*)"
    r"(?: (?P<error>[a-z_]+))? (?P<request_id>req_\w+)$"
)


def test_tail_human_output_is_one_compact_line_per_request(
    orchestra: Orchestra, two_apps: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    alpha, _ = two_apps
    done, refused, unknown = insert(
        record(alpha),
        record(alpha, outcome="rejected", status=429, error_code="quota_exceeded", ttft_ms=None),
        record(None, outcome="rejected", status=401, error_code="invalid_token", ttft_ms=None),
    )
    result = ok(orchestra("logs", "tail"))
    lines = result.stdout.splitlines()
    assert len(lines) == 3, result.stdout
    parsed = [HUMAN_LINE.match(line) for line in lines]
    assert all(parsed), lines
    first, second, third = (m.groupdict() for m in parsed if m)
    assert first == {
        "time": first["time"],
        "app": "alpha",
        "outcome": "completed",
        "status": "200",
        "tokens": "7+8",
        "ttft": "12ms",
        "duration": "282",
        "route": "/ask",
        "error": None,
        "request_id": done,
    }
    assert (second["outcome"], second["status"], second["ttft"]) == ("rejected", "429", "-")
    assert (second["error"], second["request_id"]) == ("quota_exceeded", refused)
    assert (third["app"], third["error"], third["request_id"]) == ("-", "invalid_token", unknown)
    now = datetime.now(UTC)
    shown = datetime.strptime(first["time"], "%H:%M:%S.%f").replace(
        year=now.year, month=now.month, day=now.day, tzinfo=UTC
    )
    assert abs((now - shown).total_seconds()) < 120 or now.hour == 0  # UTC wall clock
    assert "\x1b[" not in result.stdout  # no colour codes when not on a terminal


def test_prune_deletes_only_the_older_records(
    orchestra: Orchestra, two_apps: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    alpha, beta = two_apps
    _, _, kept_1, kept_2 = insert(
        record(alpha, age=timedelta(days=45)),
        record(beta, age=timedelta(days=30, hours=1)),
        record(alpha, age=timedelta(days=29, hours=23)),
        record(beta),
    )
    result = ok(orchestra("logs", "prune", "--older-than", "30d"))
    assert "2 record(s) older than 30d deleted" in result.stdout
    assert ids_of(tail_json(orchestra)) == [kept_1, kept_2]
    again = ok(orchestra("logs", "prune", "--older-than", "30d"))
    assert "0 record(s)" in again.stdout
    ok(orchestra("logs", "prune", "--older-than", "1h"))
    assert ids_of(tail_json(orchestra)) == [kept_2]


@pytest.mark.parametrize("duration", ["30", "abc", "10x", "0d", "-5m", "1.5h", "", "30 days"])
def test_malformed_durations_exit_non_zero_with_a_message(
    orchestra: Orchestra, initialised: Path, duration: str
) -> None:
    message = "must be greater than zero" if duration == "0d" else "Malformed duration"
    fails(orchestra("logs", "prune", "--older-than", duration), 2, message)
    fails(orchestra("logs", "tail", "--since", duration), 2, message)
    fails(orchestra("logs", "tail", "--since", duration, "--follow"), 2, message)


def test_prune_needs_older_than(orchestra: Orchestra, initialised: Path) -> None:
    result = orchestra("logs", "prune")
    assert result.exit_code == 2 and "--older-than" in result.stderr


# --- following on PostgreSQL, where replicas commit out of id order -------------------------


@pytest.mark.postgres
def test_follow_prints_a_record_committed_after_a_later_one(
    tmp_path: Path, postgres_schema_sync: PostgresSchema
) -> None:
    schema = postgres_schema_sync.name
    env = child_env({"database_url": POSTGRES_URL, "database_schema": schema, "home": tmp_path})
    slow, fast, seed = record(None), record(None), record(None)

    async def scenario(tail: Tail) -> None:
        db = Database.open(POSTGRES_URL, schema=postgres_schema_sync.name, pool_size=3)
        try:
            async with db.session() as session:
                await request_logs.append_logs(session, [seed.row()])
            await anyio.to_thread.run_sync(tail.next_record, time.monotonic() + TAIL_START_S)
            async with db.session() as held:  # replica A's batch: an id, not yet committed
                await request_logs.append_logs(held, [slow.row()])
                async with db.session() as other:  # replica B's batch: a later id, committed
                    await request_logs.append_logs(other, [fast.row()])
                await anyio.to_thread.run_sync(
                    tail.wait_for, fast.request_id, time.monotonic() + TAIL_BOUND_S
                )
            await anyio.to_thread.run_sync(
                tail.wait_for, slow.request_id, time.monotonic() + TAIL_BOUND_S
            )
        finally:
            await db.close()

    async def migrate() -> None:
        db = Database.open(POSTGRES_URL, schema=postgres_schema_sync.name)
        try:
            await db.upgrade()
        finally:
            await db.close()

    anyio.run(migrate)
    tail = Tail(["--follow", "--json", "-n", "1"], env)
    try:
        anyio.run(scenario, tail)
    finally:
        tail.close()


@pytest.fixture
def postgres_schema_sync() -> Iterator[PostgresSchema]:
    schema = PostgresSchema()
    anyio.run(schema.create)
    try:
        yield schema
    finally:
        anyio.run(schema.drop)
