"""Conversation threads of the calling app: read one, forget one (GET/DELETE /conversations)."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.core.errors import NotFound
from gateway.flows.protocol import ThreadStore


@dataclass(frozen=True, slots=True)
class ThreadMessage:
    role: str
    content: str


def _not_found(conversation_id: str) -> NotFound:
    return NotFound(f"No conversation {conversation_id!r} for this app.")


def _check_possible(conversation_id: str) -> None:
    # /ask refuses control characters in a conversation id, and PostgreSQL refuses NUL in a
    # query: such a thread cannot exist, so it is not looked up.
    if any(ord(char) < 0x20 or char == "\x7f" for char in conversation_id):
        raise _not_found(conversation_id)


async def conversation(
    threads: ThreadStore, *, app_id: str, conversation_id: str
) -> list[ThreadMessage]:
    """The thread's messages, newest last; NotFound when this app has no such thread."""
    _check_possible(conversation_id)
    messages = await threads.read_thread(app_id=app_id, conversation_id=conversation_id)
    if not messages:
        raise _not_found(conversation_id)
    return [ThreadMessage(str(m.get("role")), str(m.get("content") or "")) for m in messages]


async def forget_conversation(threads: ThreadStore, *, app_id: str, conversation_id: str) -> None:
    """Remove the thread; NotFound when this app has no such thread."""
    _check_possible(conversation_id)
    if not await threads.delete_thread(app_id=app_id, conversation_id=conversation_id):
        raise _not_found(conversation_id)
