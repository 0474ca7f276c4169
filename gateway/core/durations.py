"""Human durations (``30d``, ``12h``, ``15m``, ``90s``) as used by the CLI and filters."""

from __future__ import annotations

import re
from datetime import timedelta

from gateway.core.errors import InvalidRequest

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PATTERN = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")


def parse_duration(text: str) -> timedelta:
    match = _PATTERN.match(text)
    if match is None:
        raise InvalidRequest(
            f"Malformed duration {text!r}: use a whole number and a unit "
            "s, m, h, d or w (e.g. 30d)."
        )
    amount = int(match.group(1))
    if amount == 0:
        raise InvalidRequest(f"Duration {text!r} must be greater than zero.")
    try:
        return timedelta(seconds=amount * _UNITS[match.group(2)])
    except OverflowError:
        # timedelta stops at 999,999,999 days.
        raise InvalidRequest(f"Duration {text!r} is too long.") from None
