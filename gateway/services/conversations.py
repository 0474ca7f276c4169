"""Conversation threads of the calling app: read one, forget one (GET/DELETE /conversations).

Threads are stored under an owner: the app (its ``orc_`` token's calls) or one end user of
the app. An end user's threads are named by ``thread_owner``, which no app-token call and no
other user can produce, so a user reads and writes only their own threads.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.core.errors import NotFound
from gateway.flows.protocol import ThreadStore


@dataclass(frozen=True, slots=True)
class ThreadMessage:
    role: str
    content: str


def thread_owner(app_id: str, user: str | None) -> str:
    """Whose threads: the app's, or one of its users' (the user's length first, so no two
    users' names can run into each other; ids contain no ``@``, so no app's either)."""
    return app_id if user is None else f"{app_id}@{len(user)}.{user}"


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
