from __future__ import annotations

import re
import time

import pytest

from gateway.core import ids

_SHAPE = re.compile(r"^(app|tok|req)_[0-9a-hjkmnp-tv-z]{26}$")


@pytest.mark.parametrize(
    ("factory", "prefix"),
    [(ids.new_app_id, "app_"), (ids.new_token_id, "tok_"), (ids.new_request_id, "req_")],
)
def test_ids_have_their_prefix_and_shape(factory: object, prefix: str) -> None:
    assert callable(factory)
    value = factory()
    assert value.startswith(prefix)
    assert _SHAPE.match(value), value
    assert len(value) <= 40  # the width of the id columns


def test_ids_are_unique() -> None:
    values = {ids.new_token_id() for _ in range(2000)}
    assert len(values) == 2000


def test_ids_sort_by_creation_time(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter(range(1_700_000_000_000, 1_700_000_000_000 + 50 * 7, 7))
    monkeypatch.setattr(time, "time_ns", lambda: next(clock) * 1_000_000)
    made = [ids.new_app_id() for _ in range(50)]
    assert made == sorted(made)


def test_the_time_part_is_the_millisecond_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "time_ns", lambda: 0)
    assert ids.time_ordered("x")[:12] == "x_0000000000"
    monkeypatch.setattr(time, "time_ns", lambda: 33 * 1_000_000)
    assert ids.time_ordered("x")[:12] == "x_0000000011"  # 33 = 1*32 + 1


def test_the_random_part_varies_within_one_millisecond(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "time_ns", lambda: 1_700_000_000_000_000_000)
    values = {ids.new_request_id() for _ in range(100)}
    assert len(values) == 100
    assert len({value[:14] for value in values}) == 1


def _digit_by_digit(value: int, width: int) -> str:
    """The plain definition: ``width`` Crockford digits of ``value``, most significant first."""
    alphabet = "0123456789abcdefghjkmnpqrstvwxyz"
    return "".join(alphabet[(value >> (5 * place)) % 32] for place in reversed(range(width)))


@pytest.mark.parametrize("millis", [0, 1, 31, 32, 1_700_000_000_123, (1 << 50) - 1, 1 << 50])
@pytest.mark.parametrize("random_bits", [0, 1, 0xABCDEF, (1 << 80) - 1, 1 << 79])
def test_the_encoding_is_base32_of_time_then_randomness(
    monkeypatch: pytest.MonkeyPatch, millis: int, random_bits: int
) -> None:
    monkeypatch.setattr(time, "time_ns", lambda: millis * 1_000_000 + 999_999)
    monkeypatch.setattr(ids.secrets, "randbits", lambda bits: random_bits)
    expected = _digit_by_digit(millis, 10) + _digit_by_digit(random_bits, 16)
    assert ids.time_ordered("req") == f"req_{expected}"
