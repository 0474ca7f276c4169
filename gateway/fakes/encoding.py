"""Wire encoding of the fake's answers, byte-for-byte in OpenAI's shape.

Stream chunks are assembled from pre-encoded byte fragments (a per-request prefix, the
pre-encoded delta of a vocabulary word, a constant suffix), so a chunk costs two byte
concatenations and no JSON serialisation.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

SYSTEM_FINGERPRINT = "fp_fa4e0c4e57"
DONE = b"data: [DONE]\n\n"
_ROLE_DELTA = b'{"role":"assistant","content":"","refusal":null}'
_MODERATION_CATEGORIES = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)
_IMAGE_CATEGORIES = frozenset(
    {
        "self-harm",
        "self-harm/intent",
        "self-harm/instructions",
        "sexual",
        "violence",
        "violence/graphic",
    }
)
_MODEL_CREATED = 1715367049


def _compact(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def content_delta(text: str) -> bytes:
    """The pre-encoded ``delta`` object of one content chunk."""
    return b'{"content":' + _compact(text) + b"}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    """OpenAI's usage object, with the token detail objects it always includes."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


class ChunkEncoder:
    """Encodes the ``data: <chat.completion.chunk>\\n\\n`` events of one streamed answer."""

    __slots__ = ("_head", "_prefix", "_tail")

    def __init__(self, completion_id: str, created: int, model: str, include_usage: bool) -> None:
        head = _compact(
            {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "service_tier": "default",
                "system_fingerprint": SYSTEM_FINGERPRINT,
            }
        )[:-1]
        self._head = b"data: " + head
        self._prefix = self._head + b',"choices":[{"index":0,"delta":'
        usage_field = b',"usage":null' if include_usage else b""
        self._tail = b',"logprobs":null,"finish_reason":null}]' + usage_field + b"}\n\n"

    def role(self) -> bytes:
        """The first chunk: the assistant role with empty content."""
        return self._prefix + _ROLE_DELTA + self._tail

    def content(self, delta: bytes) -> bytes:
        """A content chunk for a delta from :func:`content_delta`."""
        return self._prefix + delta + self._tail

    def finish(self, reason: str) -> bytes:
        """The chunk with an empty delta and the finish reason."""
        tail = self._tail.replace(b'"finish_reason":null', b'"finish_reason":' + _compact(reason))
        return self._prefix + b"{}" + tail

    def usage(self, prompt_tokens: int, completion_tokens: int) -> bytes:
        """The ``include_usage`` chunk: no choices, the usage object."""
        body = _compact(usage(prompt_tokens, completion_tokens))
        return self._head + b',"choices":[],"usage":' + body + b"}\n\n"


def completion(
    *,
    completion_id: str,
    created: int,
    model: str,
    content: str,
    finish_reason: str,
    prompt_tokens: int,
    completion_tokens: int,
) -> bytes:
    """A non-streamed ``chat.completion`` object."""
    body = {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": content,
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": usage(prompt_tokens, completion_tokens),
        "service_tier": "default",
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }
    return json.dumps(body, indent=2, ensure_ascii=False).encode()


def _moderation_result(flagged: bool, has_image: bool) -> dict[str, Any]:
    applied = {
        name: ["text", "image"] if has_image and name in _IMAGE_CATEGORIES else ["text"]
        for name in _MODERATION_CATEGORIES
    }
    return {
        "flagged": flagged,
        "categories": {name: flagged and name == "harassment" for name in _MODERATION_CATEGORIES},
        "category_scores": {
            name: 0.9731 if flagged and name == "harassment" else 1.2e-05
            for name in _MODERATION_CATEGORIES
        },
        "category_applied_input_types": applied,
    }


def moderation(
    moderation_id: str, model: str, flags: Sequence[bool], has_image: bool = False
) -> bytes:
    """A ``/v1/moderations`` response with one result per input item."""
    results = [_moderation_result(flagged, has_image) for flagged in flags]
    return json.dumps({"id": moderation_id, "model": model, "results": results}, indent=2).encode()


def model_object(model: str) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": _MODEL_CREATED, "owned_by": "system"}


def model_list(models: Sequence[str]) -> bytes:
    """The ``GET /v1/models`` list."""
    return json.dumps({"object": "list", "data": [model_object(m) for m in models]}).encode()
