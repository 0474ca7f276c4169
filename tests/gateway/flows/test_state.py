"""The leading system messages are the instructions (sent every time, never saved)."""

from __future__ import annotations

from gateway.flows.state import split_instructions
from tests.gateway.flows.doubles import assistant, system, user


def test_leading_system_messages_are_the_instructions() -> None:
    messages = [system("a"), system("b"), user("q"), system("later"), assistant("r")]
    assert split_instructions(messages) == (
        [system("a"), system("b")],
        [user("q"), system("later"), assistant("r")],
    )


def test_no_instructions() -> None:
    assert split_instructions([user("q")]) == ([], [user("q")])
    assert split_instructions([]) == ([], [])
