"""The Responses API's objects and streamed events, shaped like OpenAI's (openai-python types).

A ``response`` object, and the event sequence of a one-message text answer: ``response.created``,
``response.in_progress``, ``response.output_item.added``, ``response.content_part.added``, one
``response.output_text.delta`` per token, ``response.output_text.done``,
``response.content_part.done``, ``response.output_item.done``, then ``response.completed`` (or
``response.incomplete`` when ``max_output_tokens`` cut it). Every event is ``event: <type>`` and
``data: <json>`` (whose ``type`` repeats the name) with a ``sequence_number`` from 0.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


def _compact(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    }


def output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def message_item(item_id: str, status: str, text: str | None) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": [] if text is None else [output_text(text)],
    }


@dataclass(slots=True)
class ResponseShape:
    """What one response object says, whatever its state."""

    id: str
    created_at: int
    model: str
    item_id: str
    request: dict[str, Any]
    status: str = "in_progress"
    text: str | None = None
    usage: dict[str, Any] | None = None
    incomplete: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        body = self.request
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": self.status,
            "background": False,
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if self.incomplete else None,
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "metadata": body.get("metadata") or {},
            "model": self.model,
            "output": []
            if self.text is None
            else [message_item(self.item_id, "completed", self.text)],
            "parallel_tool_calls": True,
            "previous_response_id": body.get("previous_response_id"),
            "reasoning": {"effort": None, "summary": None},
            "service_tier": "default",
            "store": body.get("store", True) is not False,
            "temperature": body.get("temperature", 1.0),
            "text": {"format": {"type": "text"}, "verbosity": "medium"},
            "tool_choice": "auto",
            "tools": [],
            "top_p": body.get("top_p", 1.0),
            "truncation": "disabled",
            "usage": self.usage,
            "user": None,
        }


class EventEncoder:
    """The ``event:``/``data:`` blocks of one streamed response, numbered in order."""

    __slots__ = ("_sequence", "shape")

    def __init__(self, shape: ResponseShape) -> None:
        self.shape = shape
        self._sequence = 0

    def _event(self, kind: str, fields: dict[str, Any]) -> bytes:
        data = {"type": kind, **fields, "sequence_number": self._sequence}
        self._sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + _compact(data) + b"\n\n"

    def opening(self) -> list[bytes]:
        """Everything before the first token."""
        item = message_item(self.shape.item_id, "in_progress", None)
        part = output_text("")
        return [
            self._event("response.created", {"response": self.shape.to_json()}),
            self._event("response.in_progress", {"response": self.shape.to_json()}),
            self._event("response.output_item.added", {"output_index": 0, "item": item}),
            self._event(
                "response.content_part.added",
                {
                    "item_id": self.shape.item_id,
                    "output_index": 0,
                    "content_index": 0,
                    "part": part,
                },
            ),
        ]

    def delta(self, text: str) -> bytes:
        return self._event(
            "response.output_text.delta",
            {
                "item_id": self.shape.item_id,
                "output_index": 0,
                "content_index": 0,
                "delta": text,
                "logprobs": [],
            },
        )

    def closing(self, text: str) -> list[bytes]:
        """Everything after the last token; the shape must hold its final state."""
        where = {"item_id": self.shape.item_id, "output_index": 0, "content_index": 0}
        final = "response.incomplete" if self.shape.incomplete else "response.completed"
        return [
            self._event("response.output_text.done", {**where, "text": text, "logprobs": []}),
            self._event("response.content_part.done", {**where, "part": output_text(text)}),
            self._event(
                "response.output_item.done",
                {"output_index": 0, "item": message_item(self.shape.item_id, "completed", text)},
            ),
            self._event(final, {"response": self.shape.to_json()}),
        ]
