"""`orchestra usage`: requests, tokens, cost and rejections per app, per UTC day or month.

Records are written the way the gateway writes them (``InteractionRecorder``, flushed), at
chosen times around the period boundaries, then the command runs in-process.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.services.interactions import InteractionRecord, InteractionRecorder
from gateway.services.usage import period_start
from gateway.storage.database import Database
from tests.cli.conftest import Orchestra, add_app, fails, json_of, ok, with_database

# gateway/storage/request_logs.py calls SQLModel's AsyncSession.execute (deprecated in favour of
# exec, a warning only): in-process, that warning would be an error here.
pytestmark = pytest.mark.filterwarnings(r"ignore:\s*.*session\.exec\(\):DeprecationWarning")

USAGE_FIELDS = {
    "app_name",
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "rejections",
    "quota_rejections",
    # Ratings (POST /feedback): completed answers, rated up, rated down, share rated.
    "answers",
    "rated_up",
    "rated_down",
    "rated_share",
}


def record(
    app: dict[str, Any] | None,
    at: datetime,
    *,
    tokens: tuple[int, int] = (10, 20),
    cost: float = 0.0,
    outcome: str = "completed",
    status: int = 200,
    error_code: str | None = None,
) -> InteractionRecord:
    return InteractionRecord(
        time=at,
        request_id=f"req_{secrets.token_hex(8)}",
        route="/ask",
        outcome=outcome,
        http_status=status,
        app_id=None if app is None else app["id"],
        app_name=None if app is None else app["name"],
        model="gpt-4o-mini",
        error_code=error_code,
        prompt_tokens=tokens[0],
        completion_tokens=tokens[1],
        duration_ms=100.0,
        cost_usd=cost,
    )


def refused(app: dict[str, Any] | None, at: datetime, status: int, code: str) -> InteractionRecord:
    return record(app, at, tokens=(0, 0), outcome="rejected", status=status, error_code=code)


def write(*records: InteractionRecord) -> None:
    async def work(db: Database) -> None:
        recorder = InteractionRecorder(db)
        for r in records:
            recorder.record(r)
        await recorder.flush()
        assert recorder.written == len(records)

    with_database(work)


@pytest.fixture
def apps(orchestra: Orchestra, initialised: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    return add_app(orchestra, "alpha")["app"], add_app(orchestra, "beta")["app"]


@pytest.fixture
def boundaries() -> tuple[datetime, datetime]:
    """The starts of today and of this month (UTC); the test is skipped if midnight passes."""
    return period_start("day"), period_start("month")


def same_day(day: datetime) -> None:
    if period_start("day") != day:
        pytest.skip("the UTC day changed during the test")


def by_app(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    rows = report["apps"]
    assert [r["app_name"] for r in rows] == sorted(r["app_name"] for r in rows)
    return {row["app_name"]: row for row in rows}


def test_usage_per_app_today_and_this_month(
    orchestra: Orchestra,
    apps: tuple[dict[str, Any], dict[str, Any]],
    boundaries: tuple[datetime, datetime],
) -> None:
    alpha, beta = apps
    day, month = boundaries
    now = datetime.now(UTC)
    write(
        record(alpha, day, tokens=(100, 200), cost=0.5),  # the first instant of today
        record(alpha, now, tokens=(1, 2), cost=0.25),
        record(alpha, day - timedelta(microseconds=1), tokens=(1000, 2000), cost=4.0),
        record(beta, month - timedelta(seconds=1), tokens=(7, 7), cost=8.0),  # last month
        refused(beta, now, 429, "quota_exceeded"),
        refused(beta, now, 400, "invalid_request"),
        record(beta, now, tokens=(3, 4), cost=0.125),
        refused(None, now, 401, "invalid_token"),
    )
    today = json_of(orchestra("usage", "--json"))
    explicit = json_of(orchestra("usage", "--period", "day", "--json"))
    this_month = json_of(orchestra("usage", "--period", "month", "--json"))
    same_day(day)

    assert set(today) == {"period", "since", "apps"}
    assert today["period"] == "day" and explicit == today
    assert today["since"] == day.isoformat().replace("+00:00", "Z")
    rows = by_app(today)
    assert set(rows) == {"alpha", "beta"}  # a record without an app is nobody's usage
    for row in rows.values():
        assert set(row) == USAGE_FIELDS
    a, b = rows["alpha"], rows["beta"]
    assert (a["requests"], a["prompt_tokens"], a["completion_tokens"]) == (2, 101, 202)
    assert a["cost_usd"] == pytest.approx(0.75)
    assert (a["rejections"], a["quota_rejections"]) == (0, 0)
    assert (b["requests"], b["prompt_tokens"], b["completion_tokens"]) == (3, 3, 4)
    assert b["cost_usd"] == pytest.approx(0.125)
    assert (b["rejections"], b["quota_rejections"]) == (2, 1)
    assert (a["answers"], b["answers"]) == (2, 1)
    assert (a["rated_up"], a["rated_down"], a["rated_share"]) == (0, 0, 0.0)

    assert this_month["period"] == "month"
    assert this_month["since"] == month.isoformat().replace("+00:00", "Z")
    month_rows = by_app(this_month)
    yesterday_in_month = day > month  # not on the 1st: the record just before today counts
    extra = 1 if yesterday_in_month else 0
    ma = month_rows["alpha"]
    assert ma["requests"] == 2 + extra
    assert ma["prompt_tokens"] == 101 + 1000 * extra
    assert ma["cost_usd"] == pytest.approx(0.75 + 4.0 * extra)
    assert month_rows["beta"] == b  # last month's record is not in it


def test_usage_of_one_app(
    orchestra: Orchestra,
    apps: tuple[dict[str, Any], dict[str, Any]],
    boundaries: tuple[datetime, datetime],
) -> None:
    alpha, beta = apps
    now = datetime.now(UTC)
    write(record(alpha, now, cost=0.5), record(beta, now), record(beta, now, tokens=(1, 1)))
    only_beta = json_of(orchestra("usage", "--app", "beta", "--json"))
    same_day(boundaries[0])
    assert [r["app_name"] for r in only_beta["apps"]] == ["beta"]
    assert only_beta["apps"][0]["requests"] == 2
    assert only_beta["apps"][0]["prompt_tokens"] == 11
    # An app with no record in the period: no row (not an error).
    add_app(orchestra, "gamma")
    assert json_of(orchestra("usage", "--app", "gamma", "--json"))["apps"] == []


def test_usage_human_table(
    orchestra: Orchestra,
    apps: tuple[dict[str, Any], dict[str, Any]],
    boundaries: tuple[datetime, datetime],
) -> None:
    alpha, _ = apps
    write(record(alpha, datetime.now(UTC), tokens=(123, 456), cost=0.0123))
    result = ok(orchestra("usage"))
    same_day(boundaries[0])
    out = result.stdout
    assert f"Usage since {boundaries[0]:%Y-%m-%d} 00:00 UTC (day)" in " ".join(out.split())
    row = next(line for line in out.splitlines() if "alpha" in line)
    cells = [cell.strip() for cell in row.strip(" │|┃").split("│")]
    assert cells == ["alpha", "1", "123", "456", "0.012300", "0", "0"], cells
    assert "beta" not in out
    with pytest.raises(json.JSONDecodeError):
        json.loads(out)


def test_usage_on_an_80_column_terminal_wraps_headers_and_cuts_no_value(
    orchestra: Orchestra, initialised: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rich used to print `completi…` at 80 columns; headers wrap instead, values stay whole."""
    app = add_app(orchestra, "customer-support")["app"]
    write(record(app, datetime.now(UTC), tokens=(1_234_567, 7_654_321), cost=12.3456))
    monkeypatch.setenv("COLUMNS", "80")
    out = ok(orchestra("usage")).stdout
    assert "…" not in out
    assert max(len(line) for line in out.splitlines()) <= 80
    row = next(line for line in out.splitlines() if "customer-support" in line)
    cells = [cell.strip() for cell in row.strip(" │").split("│")]
    # "quota 429s", a part of "rejected", is the column that goes on a narrow terminal.
    assert cells == ["customer-support", "1", "1234567", "7654321", "12.345600", "0"], out
    assert "completion" in out and "tokens" in out


def test_usage_with_no_records_is_empty(orchestra: Orchestra, initialised: Path) -> None:
    report = json_of(orchestra("usage", "--period", "month", "--json"))
    assert report["apps"] == []
    ok(orchestra("usage"))


def test_unknown_app_or_period_is_refused(
    orchestra: Orchestra, apps: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    fails(orchestra("usage", "--app", "nope"), 3, "No app named 'nope'")
    fails(orchestra("usage", "--app", "nope", "--json"), 3, "No app named 'nope'")
    for period in ("week", "Day", "", "year"):
        fails(orchestra("usage", "--period", period), 2, f"Unknown period {period!r}")
