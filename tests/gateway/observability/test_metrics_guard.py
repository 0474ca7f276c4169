"""Metrics.observe never raises on the counts of a request: its record must still be written."""

from __future__ import annotations

import math

from gateway.observability.metrics import Metrics, Observation


def _observation(prompt: int, completion: int, cost: float) -> Observation:
    return Observation(
        route="/ask",
        app="a",
        outcome="completed",
        http_status=200,
        model="m",
        error_code=None,
        quota_limit=None,
        prompt_tokens=prompt,
        completion_tokens=completion,
        cost_usd=cost,
        duration_s=0.1,
        ttft_s=None,
        upstream_s=None,
    )


def test_negative_or_nan_amounts_are_not_counted() -> None:
    metrics = Metrics()
    metrics.observe(_observation(-5, -(10**9), -1.0))
    metrics.observe(_observation(3, 2, math.nan))
    assert metrics.tokens.labels("a", "m", "prompt")._value.get() == 3
    assert metrics.tokens.labels("a", "m", "completion")._value.get() == 2
    assert metrics.cost.labels("a", "m")._value.get() == 0
    assert metrics.requests.labels("/ask", "a", "completed", "2xx")._value.get() == 2
