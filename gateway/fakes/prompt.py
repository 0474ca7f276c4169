"""What the fake reads from a request: directives, prompt token count, deterministic answer.

Directives are ``[name]`` or ``[name:value]`` markers inside the LAST user message (see
:mod:`gateway.fakes.openai_server` for the list). Unknown or malformed markers are plain text.

``prompt_tokens`` follows the shape of OpenAI's cookbook formula without needing tiktoken:
every message costs 3 tokens plus the "tokens" of its text content (a token is a run of word
characters or a single punctuation character, regex ``\\w+|[^\\w\\s]``) plus 1 if it has a
``name``; the reply is primed with 3 more tokens.

The answer is a sequence of vocabulary words (each chunk is ``"word "``) chosen by a
``random.Random`` seeded with a BLAKE2b hash of the canonical JSON of all messages, so the same
messages always give the same answer and different prompts give different answers.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

_DIRECTIVE_RE = re.compile(
    r"\[(fail|die-after|tokens|token-ms|first-token-ms):([0-9]+(?:\.[0-9]+)?)\]|\[(hang|xss|ignore-max-tokens)\]"
)
_FAIL_STATUSES = frozenset(str(status.value) for status in HTTPStatus if status >= 400)
_TOKEN_RE = re.compile(r"\w+|[^\w\s]")

_VOCABULARY = (
    "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "orchestra", "gateway",
    "stream", "token", "model", "answer", "river", "mountain", "signal", "bridge", "garden",
    "lantern", "harbor", "meadow", "copper", "silver", "violet", "amber", "echo", "pixel",
    "vector", "matrix", "cloud", "ocean", "forest", "desert", "comet", "planet", "galaxy",
    "rocket", "engine", "circuit", "puzzle", "window", "mirror", "candle", "thunder", "breeze",
    "marble", "velvet", "saffron", "quartz", "falcon", "otter", "badger", "heron", "maple",
    "cedar", "willow", "granite", "harvest", "journey", "melody", "rhythm", "canvas", "summit",
)  # fmt: skip
WORDS: tuple[str, ...] = tuple(f"{word} " for word in _VOCABULARY)
"""The chunk texts: one vocabulary word followed by a space."""

XSS_CHUNKS: tuple[str, ...] = ("<img ", "src=x ", "onerror=", "alert(1)>")
"""The ``[xss]`` answer, ``<img src=x onerror=alert(1)>``, split across four chunks."""


@dataclass(frozen=True, slots=True)
class Directives:
    """Per-request behaviour overrides parsed from the last user message."""

    fail_status: int | None = None
    die_after: int | None = None
    hang: bool = False
    xss: bool = False
    tokens: int | None = None
    token_ms: float | None = None
    first_token_ms: float | None = None
    #: Answer the full token count even past max_tokens (a misbehaving upstream).
    ignore_max_tokens: bool = False


NO_DIRECTIVES = Directives()


def parse_directives(text: str) -> Directives:
    """Return the directives found in ``text`` (the last one of each kind wins)."""
    if "[" not in text:
        return NO_DIRECTIVES
    found: dict[str, Any] = {}
    for match in _DIRECTIVE_RE.finditer(text):
        name, value, flag = match.group(1), match.group(2), match.group(3)
        if flag is not None:
            found[flag.replace("-", "_")] = True
        elif name in ("token-ms", "first-token-ms"):
            found[name.replace("-", "_")] = float(value)
        elif name == "fail":
            if value in _FAIL_STATUSES:
                found["fail_status"] = int(value)
        elif "." not in value:
            found[name.replace("-", "_")] = int(value)
    return Directives(**found) if found else NO_DIRECTIVES


def content_text(content: object) -> str:
    """The text of a message ``content``: a string, or the ``text`` of its text parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def last_user_text(messages: Sequence[Any]) -> str:
    """The text of the last message whose role is ``user`` (empty if there is none)."""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return content_text(message.get("content"))
    return ""


def count_text_tokens(text: str) -> int:
    """A tokenizer-free token estimate: word runs plus punctuation characters."""
    return len(_TOKEN_RE.findall(text))


def count_prompt_tokens(messages: Sequence[Any]) -> int:
    """Deterministic ``prompt_tokens`` for ``messages`` (formula in the module docstring)."""
    total = 3
    for message in messages:
        total += 3
        if isinstance(message, dict):
            total += count_text_tokens(content_text(message.get("content")))
            if message.get("name"):
                total += 1
    return total


def answer_indices(messages: Sequence[Any], count: int) -> list[int]:
    """Indices into :data:`WORDS` of a deterministic ``count``-word answer to ``messages``."""
    canonical = json.dumps(messages, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.blake2b(canonical.encode(), digest_size=16).digest()
    rng = random.Random(int.from_bytes(digest, "big"))
    return rng.choices(range(len(WORDS)), k=count)
