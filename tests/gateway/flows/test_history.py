"""Trimming a thread to the token budget: newest whole turns, in order, within the budget."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.flows.history import message_tokens, split_turns, token_counts, trim_history
from gateway.upstream.tokenizer import count_messages
from tests.gateway.flows.doubles import assistant, system, user

MODEL = "gpt-4o-mini"


def thread(turns: int, words: int = 20) -> list[dict[str, str]]:
    messages: list[dict[str, str]] = []
    for i in range(turns):
        messages.append(user(f"question {i} " + "lorem " * words))
        messages.append(assistant(f"answer {i} " + "ipsum " * words))
    return messages


def test_turns_start_at_each_user_message() -> None:
    history = [assistant("hello"), user("a"), assistant("b"), user("c"), user("d"), assistant("e")]
    assert split_turns(history) == [
        [assistant("hello")],
        [user("a"), assistant("b")],
        [user("c")],
        [user("d"), assistant("e")],
    ]
    assert split_turns([]) == []


def test_a_thread_within_the_budget_is_sent_whole() -> None:
    history = thread(3)
    assert trim_history(history, sent_anyway=[user("now")], budget=10_000, model=MODEL) == history


def test_the_oldest_turns_are_dropped_first() -> None:
    history = thread(10)
    new = [user("and now?")]
    budget = count_messages([*history[-6:], *new], MODEL)  # room for exactly the last 3 turns
    kept = trim_history(history, sent_anyway=new, budget=budget, model=MODEL)
    assert kept == history[-6:]
    assert count_messages([*kept, *new], MODEL) <= budget
    # One token less and the oldest of those three goes too.
    assert trim_history(history, sent_anyway=new, budget=budget - 1, model=MODEL) == history[-4:]


def test_the_instructions_and_the_new_turn_count_against_the_budget() -> None:
    history = thread(4)
    new = [user("x")]
    alone = trim_history(history, sent_anyway=new, budget=200, model=MODEL)
    with_prompt = trim_history(
        history, sent_anyway=[system("You are terse. " * 20), *new], budget=200, model=MODEL
    )
    assert len(with_prompt) < len(alone)


def test_nothing_of_the_history_fits_when_the_request_alone_is_over_the_budget() -> None:
    big = [user("word " * 500)]
    assert trim_history(thread(2), sent_anyway=big, budget=100, model=MODEL) == []


def test_the_saved_counts_are_used_and_misaligned_ones_ignored() -> None:
    history = thread(3)
    new = [user("x")]
    budget = count_messages([*history, *new], MODEL)
    assert trim_history(history, sent_anyway=new, budget=budget, model=MODEL) == history
    # Counts saved with the thread are trusted (here: inflated, so the oldest turns go)...
    inflated = [10_000] * 2 + token_counts(history[2:], MODEL)
    trimmed = trim_history(history, sent_anyway=new, budget=budget, model=MODEL, counts=inflated)
    assert trimmed == history[2:]
    # ...unless they do not line up with the messages: then the history is counted.
    short = inflated[:-1]
    assert trim_history(history, sent_anyway=new, budget=budget, model=MODEL, counts=short) == (
        history
    )


def test_a_turn_is_never_cut_in_half() -> None:
    history = thread(3)
    # Room for the last answer alone but not its question: the whole turn is dropped.
    budget = count_messages([history[-1]], MODEL) + 1
    assert trim_history(history, sent_anyway=[], budget=budget, model=MODEL) == []


roles = st.sampled_from(["user", "assistant"])
contents = st.text(alphabet="abc xyz,.", min_size=0, max_size=60)
messages = st.lists(st.fixed_dictionaries({"role": roles, "content": contents}), max_size=30)


@settings(max_examples=200, deadline=None)
@given(history=messages, new=contents, budget=st.integers(min_value=1, max_value=600))
def test_trimming_keeps_the_longest_suffix_of_whole_turns_that_fits(
    history: list[dict[str, str]], new: str, budget: int
) -> None:
    sent_anyway = [user(new)]
    kept = trim_history(history, sent_anyway=sent_anyway, budget=budget, model=MODEL)
    # The counts saved with the thread give the same answer as counting now.
    counts = token_counts(history, MODEL)
    assert (
        trim_history(history, sent_anyway=sent_anyway, budget=budget, model=MODEL, counts=counts)
        == kept
    )
    turns = split_turns(history)
    # A suffix of the thread, made of whole turns, in order.
    count = len(split_turns(kept))
    assert kept == [m for turn in turns[len(turns) - count :] for m in turn]
    # Within the budget (unless nothing is kept), and one more turn would not have fitted.
    used = count_messages([*sent_anyway, *kept], MODEL)
    if kept:
        assert used <= budget
    if count < len(turns):
        assert used + message_tokens(turns[len(turns) - count - 1], MODEL) > budget
