"""Scrub secrets out of text before it is logged or shown: provider keys, client tokens."""

from __future__ import annotations

import re

_SECRET = re.compile(
    r"(sk-[A-Za-z0-9_\-*.]{3,}|orc_[A-Za-z0-9_\-]{8,}|Bearer\s+[A-Za-z0-9_\-.~+/=]{8,})"
)


def redact_text(text: str) -> str:
    return _SECRET.sub("[redacted]", text)
