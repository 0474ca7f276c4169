"""Trimming a thread to a token budget: the newest whole turns that fit are sent, in order.

A turn is a user message and the messages that follow it up to the next user message (the
assistant's answer). Whole turns are dropped, oldest first, so the model never sees an answer
without its question. The instructions (system prompt) and the new turn are always sent, even
when they alone exceed the budget: they are the request, the history is context.

Tokens are counted with the model's real tokenizer (``gateway.upstream.tokenizer``). Each
message is counted once, when it is saved (``ThreadState.tokens``), so a long thread is not
re-encoded on every answer; without those counts (or if they do not line up with the messages)
the history is counted here.
"""

from __future__ import annotations

from gateway.flows.state import Message
from gateway.upstream.tokenizer import count_messages


def split_turns(history: list[Message]) -> list[list[Message]]:
    """The thread cut before each user message (leading other messages join the first turn)."""
    turns: list[list[Message]] = []
    for message in history:
        if message.get("role") == "user" or not turns:
            turns.append([message])
        else:
            turns[-1].append(message)
    return turns


def message_tokens(messages: list[Message], model: str) -> int:
    """The tokens these messages add to a prompt (count_messages is additive past its primer)."""
    return count_messages(messages, model) - count_messages([], model)


def token_counts(messages: list[Message], model: str) -> list[int]:
    """Each message's share of a prompt, as saved with the thread."""
    return [message_tokens([message], model) for message in messages]


def _turn_starts(history: list[Message]) -> list[int]:
    return [i for i, message in enumerate(history) if i == 0 or message.get("role") == "user"]


def trim_history(
    history: list[Message],
    *,
    sent_anyway: list[Message],
    budget: int,
    model: str,
    counts: list[int] | None = None,
) -> list[Message]:
    """The newest turns of ``history`` that fit in ``budget`` along with ``sent_anyway``.

    ``counts`` are the messages' token counts (``token_counts``), when they were saved.
    """
    if counts is None or len(counts) != len(history):
        counts = token_counts(history, model)
    used = count_messages(sent_anyway, model)
    start = len(history)
    for begin in reversed(_turn_starts(history)):
        cost = sum(counts[begin:start])
        if used + cost > budget:
            break
        used += cost
        start = begin
    return history[start:]
