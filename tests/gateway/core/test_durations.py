from __future__ import annotations

from datetime import timedelta

import pytest

from gateway.core.durations import parse_duration
from gateway.core.errors import InvalidRequest


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("12h", timedelta(hours=12)),
        ("30d", timedelta(days=30)),
        ("2w", timedelta(weeks=2)),
        (" 7d ", timedelta(days=7)),
        ("1 h", timedelta(hours=1)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text", ["", "d", "30", "3x", "30D", "-1d", "1.5h", "1d2h", "thirty days", "30 days"]
)
def test_malformed_durations_are_refused_with_the_input_and_the_units(text: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_duration(text)
    assert caught.value.message.startswith(f"Malformed duration {text!r}")
    assert "s, m, h, d or w" in caught.value.message


def test_a_zero_duration_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="greater than zero"):
        parse_duration("0d")


def test_a_duration_past_timedeltas_range_is_refused_not_an_overflow() -> None:
    with pytest.raises(InvalidRequest, match="too long"):
        parse_duration("99999999999d")
