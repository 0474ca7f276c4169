"""Calendar.at: the UTC day and month a moment falls in, and how long until each ends.

Checked against the plain datetime computation it replaced (cached per day since), on
random moments and on the edges: midnight, the last instant of a day, a month, a year.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.core.quota_policy import Calendar


def expected(now: float) -> tuple[str, float, str, float]:
    moment = datetime.fromtimestamp(now, UTC)
    next_day = (moment + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    first = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    next_month = (first + timedelta(days=32)).replace(day=1)
    return (
        moment.strftime("%Y%m%d"),
        (next_day - moment).total_seconds(),
        moment.strftime("%Y%m"),
        (next_month - moment).total_seconds(),
    )


def check(now: float) -> None:
    calendar = Calendar.at(now)
    day, day_ends_in, month, month_ends_in = expected(now)
    assert (calendar.day, calendar.month) == (day, month)
    assert calendar.day_ends_in == pytest.approx(day_ends_in, abs=1e-6)
    assert calendar.month_ends_in == pytest.approx(month_ends_in, abs=1e-6)


@given(st.floats(min_value=0, max_value=4_102_444_800))  # 1970 to 2100
def test_any_moment(now: float) -> None:
    check(now)


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC),  # the last ms of a year
        datetime(2027, 1, 1, tzinfo=UTC),
        datetime(2028, 2, 28, 23, 59, 59, tzinfo=UTC),  # a leap year's February
        datetime(2028, 2, 29, 12, tzinfo=UTC),
        datetime(2026, 3, 1, tzinfo=UTC),
    ],
)
def test_edges(moment: datetime) -> None:
    check(moment.timestamp())


def test_consecutive_days_are_not_mixed_up_by_the_cache() -> None:
    midnight = datetime(2026, 12, 2, tzinfo=UTC).timestamp()
    before, after = Calendar.at(midnight - 0.001), Calendar.at(midnight)
    assert (before.day, after.day) == ("20261201", "20261202")
    assert before.day_ends_in == pytest.approx(0.001, abs=1e-6)
    assert after.day_ends_in == pytest.approx(86_400)
