"""RateLimit headers (IETF draft) on every answer, and OpenAI's x-ratelimit-* on /v1.

With per-user limits, the states hold the app's limits and the user's: the headers show the
tighter of them."""

from __future__ import annotations

import math
from collections.abc import Sequence

from gateway.core.quota_policy import LIMIT_RPM, LIMIT_TPM, LimitState, tightest


def _seconds(value: float) -> str:
    return str(max(0, math.ceil(value)))


def headers_for(states: Sequence[object], *, openai: bool) -> dict[str, str]:
    typed = tuple(s for s in states if isinstance(s, LimitState))
    state = tightest(typed)
    if state is None:
        return {}
    headers = {
        "RateLimit-Limit": str(state.limit),
        "RateLimit-Remaining": str(state.remaining),
        "RateLimit-Reset": _seconds(state.reset_s),
    }
    if openai:
        for s in typed:
            kind = {LIMIT_RPM: "requests", LIMIT_TPM: "tokens"}.get(s.name)
            if kind is None:
                continue
            remaining = f"x-ratelimit-remaining-{kind}"
            # The app's limit and the user's (after it): the one with less left.
            if remaining in headers and int(headers[remaining]) <= s.remaining:
                continue
            headers[f"x-ratelimit-limit-{kind}"] = str(s.limit)
            headers[remaining] = str(s.remaining)
            headers[f"x-ratelimit-reset-{kind}"] = f"{_seconds(s.reset_s)}s"
    return headers
