from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from gateway.security import tokens


def test_a_token_is_orc_and_256_random_bits_url_safe() -> None:
    new = tokens.generate()
    assert new.secret.startswith("orc_")
    body = new.secret.removeprefix("orc_")
    raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    assert len(raw) * 8 >= 256
    assert set(body) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_tokens_are_unique() -> None:
    secrets = {tokens.generate().secret for _ in range(1000)}
    assert len(secrets) == 1000


def test_only_a_sha256_digest_and_a_short_hint_are_kept() -> None:
    new = tokens.generate()
    assert new.digest == hashlib.sha256(new.secret.encode()).hexdigest()
    assert new.secret not in new.digest
    assert new.hint == new.secret[:8] + "…"
    # The hint reveals the prefix and 24 bits at most.
    assert len(new.hint.removeprefix("orc_").removesuffix("…")) <= 4


def test_the_digest_is_stable() -> None:
    assert tokens.digest("orc_abc") == tokens.digest("orc_abc")
    assert tokens.digest("orc_abc") != tokens.digest("orc_abd")


def test_matches_compares_the_digest() -> None:
    new = tokens.generate()
    assert tokens.matches(new.secret, new.digest)
    assert not tokens.matches(new.secret + "x", new.digest)
    assert not tokens.matches(tokens.generate().secret, new.digest)


def test_matches_is_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []
    original = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        calls.append((a, b))
        return original(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    new = tokens.generate()
    assert tokens.matches(new.secret, new.digest)
    assert calls == [(new.digest, new.digest)]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("orc_" + "a" * 43, True),
        ("orc_" + "a" * 36, True),
        ("orc_" + "a" * 35, False),
        ("orc_" + "a" * 97, False),
        ("sk-" + "a" * 43, False),
        ("ORC_" + "a" * 43, False),
        ("", False),
    ],
)
def test_looks_like_token(value: str, expected: bool) -> None:
    assert tokens.looks_like_token(value) is expected


def test_a_generated_token_looks_like_a_token() -> None:
    assert tokens.looks_like_token(tokens.generate().secret)
