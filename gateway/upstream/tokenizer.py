"""Counting prompt tokens with OpenAI's real tokenizers (o200k/cl100k), offline.

``bpe-openai`` ships the BPE tables inside the wheel, so nothing is downloaded at run time
(tiktoken fetches its tables from the internet on first use). The encoding is loaded once per
process, on first use (only apps with token or cost limits need it).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

# Per OpenAI's cookbook: each message costs its content plus ~3 framing tokens, and the
# reply is primed with 3 more.
_PER_MESSAGE = 3
_REPLY_PRIMER = 3


@lru_cache(maxsize=8)
def _encoding(model: str) -> Any:
    # Imported on first use: the tables cost ~80 MB, paid only when an app has a token limit.
    import bpe_openai

    try:
        return bpe_openai.encoding_for_model(model)
    except Exception:  # noqa: BLE001 (unknown model names: the current default encoding)
        return bpe_openai.get_encoding("o200k_base")


def warm_up(model: str) -> None:
    _encoding(model)


def count_text(text: str, model: str) -> int:
    return len(_encoding(model).encode(text))


def count_messages(messages: Sequence[dict[str, Any]], model: str) -> int:
    encoding = _encoding(model)
    total = _REPLY_PRIMER
    for message in messages:
        total += _PER_MESSAGE + len(encoding.encode(str(message.get("content") or "")))
        total += len(encoding.encode(str(message.get("role") or "")))
    return total
