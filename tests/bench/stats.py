"""Percentiles and the summary of one measurement's samples."""

from __future__ import annotations

import math
from collections.abc import Sequence

PERCENTILES = (50, 90, 99)


def percentile(sorted_values: Sequence[float], pct: float) -> float | None:
    """Linear-interpolated percentile of already sorted values (None when there are none)."""
    if not sorted_values:
        return None
    if len(sorted_values) == 1:
        return sorted_values[0]
    rank = (len(sorted_values) - 1) * pct / 100
    low = math.floor(rank)
    high = min(low + 1, len(sorted_values) - 1)
    weight = rank - low
    return sorted_values[low] * (1 - weight) + sorted_values[high] * weight


def summary(values: Sequence[float]) -> dict[str, float | None]:
    """``{"p50", "p90", "p99", "max"}`` of the values, in their unit, rounded to 0.01."""
    ordered = sorted(values)
    out: dict[str, float | None] = {}
    for pct in PERCENTILES:
        value = percentile(ordered, pct)
        out[f"p{pct}"] = None if value is None else round(value, 3)
    out["max"] = round(ordered[-1], 3) if ordered else None
    return out
