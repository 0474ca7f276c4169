"""The gateway's own tokenizer, against bpe-openai (an independent Rust implementation).

The counts must be the same for every script: on varied texts, on any text hypothesis makes
up (but for characters unassigned in Python's Unicode database, which newer Unicode versions
may have assigned), on lone surrogates and on special-token text. Past ``EXACT_BYTES`` the count
is extrapolated; the work stays bounded and the estimate close. And the point of it all: the
encoding costs a few MB resident, where bpe-openai costs ~130 MB (issue #8).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.upstream import tokenizer
from gateway.upstream.tokenizer import (
    EXACT_BYTES,
    INLINE_BYTES,
    Encoding,
    count_messages,
    count_text,
    encoding_for,
    encoding_name,
    fits_inline,
)

ENCODINGS = ("o200k_base", "cl100k_base")
MODEL_OF = {"o200k_base": "gpt-4o-mini", "cl100k_base": "gpt-4"}

# Each file, uncompressed, has the hash that tiktoken checks when it downloads it.
OPENAI_SHA256 = {
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
}

SAMPLES = {
    "prose": (
        "The committee met on Tuesday to review the quarterly results. Revenue grew by 12% "
        "compared with last year; costs stayed flat. They'd revisit it in March, after the "
        "spring campaign.\n\nMeanwhile, the team shipped the long-awaited offline mode."
    ),
    "code": (
        "async def refill(bucket: Bucket, rate: float) -> None:\n"
        "    while True:\n"
        "        bucket.tokens = min(bucket.capacity, bucket.tokens + rate)\n"
        "        await asyncio.sleep(1.0)  # once a second\n\n"
        "\tif (x != y && z[i] >= 0x7FFF) { return -1; }\r\n"
    ),
    "json": json.dumps(
        {
            "orders": [
                {"id": 1000 + i, "sku": f"SKU-{i * 7:05d}", "paid": i % 2 == 0} for i in range(6)
            ]
        },
        indent=2,
    ),
    "chinese": "人工智能正在改变我们的工作方式。许多公司开始使用大型语言模型来回答客户的问题。",
    "japanese": "東京では桜の季節が始まり、多くの人が公園に集まっています。週末は晴れです。",
    "korean": "서울의 지하철은 매일 수백만 명의 승객을 실어 나릅니다. 새 노선이 개통되었습니다.",
    "russian": "Вчера вечером в городе прошёл сильный дождь, и несколько улиц были затоплены.",
    "arabic": "أعلنت وزارة التعليم عن خطة جديدة لتطوير المناهج الدراسية في المدارس الحكومية.",
    "hindi": "भारत में मानसून की शुरुआत हो चुकी है और कई राज्यों में भारी बारिश की चेतावनी जारी की गई है।",
    "thai": "กรุงเทพมหานครเป็นเมืองหลวงของประเทศไทย มีประชากรมากกว่าสิบล้านคน",
    "emoji": "Launch went smoothly 🚀🎉 — 👍🏽 👩‍💻 🇫🇷 ❤️ ☕☕ #shipit",
    # Mathematical bold, italic and double-struck, CJK extension B, Gothic, a variation selector.
    "beyond the BMP": (
        "\U0001d401\U0001d428\U0001d425 \U0001d456\U0001d461 \U00020bb7野家 "
        "\U00010330\U00010331 \U0001d7d9\U0001d7da a\U000e0100b"
    ),
    "combining": "e\u0301cole\u0300 n\u0303 Zu\u0308rich \u0915\u093f\u0928\u094d",
    "whitespace": "a\u3000b\xa0c\u2028d\x1ce  \n\n\t\t  x   \r\n\r\n   ",
    "contractions": "don't can't I'LL we've they'RE 'tis '\u017f \u017f \u212a",
    "numbers": "Order 4829173 totals $1,284.50; ETA 2024-11-03T14:22:05Z, π≈3.14, ½, Ⅻ, ٣٤٥",
    "url": "https://example.com/path/to/page?q=1&x=2#frag <html><body>x</body></html>",
    "special tokens": "<|endoftext|> and <|endofprompt|> are plain text <|fim_prefix|>",
    "repeated": "a" * 500 + " " + "ab" * 300 + " " + "的" * 200,
    "empty": "",
}


@pytest.fixture(scope="module")
def reference() -> Iterator[dict[str, Any]]:
    with warnings.catch_warnings():
        # bpe_openai reads its tables with the deprecated importlib.resources.open_binary.
        warnings.simplefilter("ignore", DeprecationWarning)
        import bpe_openai

        yield {name: bpe_openai.get_encoding(name) for name in ENCODINGS}


def expected(reference: dict[str, Any], name: str, text: str) -> int:
    # As the gateway counts a chat message: special-token text is plain text.
    return len(reference[name].encode(text, disallowed_special=()))


@pytest.mark.parametrize("name", ENCODINGS)
def test_the_shipped_tables_are_openais(name: str) -> None:
    with gzip.open(tokenizer._DATA / f"{name}.tiktoken.gz") as f:
        content = f.read()
    assert hashlib.sha256(content).hexdigest() == OPENAI_SHA256[name]
    assert len(Encoding(name)._vocabulary) == tokenizer._SIZES[name]


@pytest.mark.parametrize("sample", list(SAMPLES))
@pytest.mark.parametrize("name", ENCODINGS)
def test_counts_are_the_references(reference: dict[str, Any], name: str, sample: str) -> None:
    text = SAMPLES[sample]
    assert count_text(text, MODEL_OF[name]) == expected(reference, name, text)


# Any character Python's Unicode database knows (no lone surrogate: see the test after).
known = st.characters(exclude_categories=("Cs", "Cn"))
# And runs of the characters the pre-tokenizing expressions turn on.
tricky = st.sampled_from(
    [" ", "  ", "\n", "\r\n", "\t", "\u3000", "'", "'s", "'LL", "/", "-", ".", "1", "123", "A",
     "a", "Ab", "É", "é", "\u017f", "中", "文", "ก", "\u0301", "\u093f", "😀", "👍🏽", "\u200d",
     "\ufe0f", "\U0001d400", "\U00020bb7", "<|endoftext|>"]
)  # fmt: skip
texts = st.one_of(st.text(known, max_size=60), st.lists(tricky, max_size=30).map("".join))


@pytest.mark.parametrize("name", ENCODINGS)
@settings(max_examples=300, deadline=None, database=None)
@given(text=texts)
def test_any_text_counts_as_the_reference(reference: dict[str, Any], name: str, text: str) -> None:
    assert count_text(text, MODEL_OF[name]) == expected(reference, name, text)


@pytest.mark.parametrize("name", ENCODINGS)
def test_lone_surrogates_count_as_replacement_characters(
    reference: dict[str, Any], name: str
) -> None:
    # What a JSON body's "\ud83d" alone decodes to; tiktoken encodes it as U+FFFD.
    text = "broken \ud83d emoji and \udc00 one"
    replaced = "broken \ufffd emoji and \ufffd one"
    assert count_text(text, MODEL_OF[name]) == expected(reference, name, replaced)


@pytest.mark.parametrize(
    ("model", "name"),
    [
        ("gpt-4o-mini", "o200k_base"),
        ("gpt-4o-mini-2024-07-18", "o200k_base"),
        ("gpt-4o", "o200k_base"),
        ("gpt-4.1-nano", "o200k_base"),
        ("gpt-4.5-preview", "o200k_base"),
        ("gpt-5", "o200k_base"),
        ("o3-mini", "o200k_base"),
        ("ft:gpt-4o-mini:acme::abc123", "o200k_base"),
        ("some-local-model", "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("GPT-4-0613", "cl100k_base"),
        ("gpt-4-turbo", "cl100k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
        ("gpt-35-turbo", "cl100k_base"),
        ("ft:gpt-3.5-turbo:acme::x", "cl100k_base"),
        ("text-embedding-3-small", "cl100k_base"),
    ],
)
def test_each_model_has_its_encoding(model: str, name: str) -> None:
    assert encoding_name(model) == name


def test_a_prompt_is_its_messages_plus_framing() -> None:
    system = {"role": "system", "content": "You are terse."}
    user = {"role": "user", "content": "Hello, world!"}
    assert count_messages([], "gpt-4o") == 3
    alone = count_text("You are terse.", "gpt-4o") + count_text("system", "gpt-4o") + 3
    assert count_messages([system], "gpt-4o") == 3 + alone
    # Additive past the primer: flows.history adds up saved per-message counts.
    both = count_messages([system, user], "gpt-4o")
    assert both == count_messages([system], "gpt-4o") + count_messages([user], "gpt-4o") - 3
    assert count_messages([{"role": "user", "content": None}], "gpt-4o") == 3 + 3 + 1


@pytest.fixture
def encoded(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The UTF-8 size of each text the encodings count exactly."""
    sizes: list[int] = []
    exact = Encoding._count

    def recorded(self: Encoding, text: str) -> int:
        sizes.append(len(text.encode()))
        return exact(self, text)

    monkeypatch.setattr(Encoding, "_count", recorded)
    return sizes


def test_a_long_prompt_is_counted_on_bounded_samples_and_extrapolated(
    reference: dict[str, Any], encoded: list[int]
) -> None:
    english = (SAMPLES["prose"] + " " + SAMPLES["code"]) * 300  # ~150 kB
    chinese = SAMPLES["chinese"] * 500  # ~60 kB
    messages = [
        {"role": "system", "content": "Answer in English."},
        {"role": "user", "content": english},
        {"role": "user", "content": chinese},
    ]
    o200k = reference["o200k_base"]
    truth = 3 + sum(
        3 + len(o200k.encode(m["role"])) + len(o200k.encode(m["content"])) for m in messages
    )
    estimate = count_messages(messages, "gpt-4o")
    assert sum(encoded) <= EXACT_BYTES + 1024  # plus the roles and a minimal sample each
    assert estimate == pytest.approx(truth, rel=0.03)
    one = count_text(english, "gpt-4o")
    assert one == pytest.approx(expected(reference, "o200k_base", english), rel=0.03)


def test_many_messages_past_the_budget_are_estimated_at_the_rate_seen(
    reference: dict[str, Any], encoded: list[int]
) -> None:
    messages = [
        {"role": "user", "content": f"Question {i}: what is {i} times {i + 1}?"}
        for i in range(3000)
    ]
    o200k = reference["o200k_base"]
    truth = 3 + sum(
        3 + len(o200k.encode(m["role"])) + len(o200k.encode(m["content"])) for m in messages
    )
    estimate = count_messages(messages, "gpt-4o")
    contents = [size for size in encoded if size > len("user")]
    assert sum(contents) <= EXACT_BYTES + 64
    assert estimate == pytest.approx(truth, rel=0.05)  # the later numbers are longer


def test_small_prompts_are_counted_inline_once_the_encoding_is_loaded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    small = [{"role": "user", "content": "hi"}]
    large = [{"role": "user", "content": "x" * (INLINE_BYTES + 1)}]
    encoding_for("gpt-4o")
    assert fits_inline(small, "gpt-4o")
    assert not fits_inline(large, "gpt-4o")
    monkeypatch.setattr(tokenizer, "_encodings", {})
    assert not fits_inline(small, "gpt-4o")  # the first count loads the tables (~0.4 s)


def test_threads_that_first_count_at_once_load_the_encoding_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tokenizer, "_encodings", {})
    loads: list[str] = []

    class Counted(Encoding):
        def __init__(self, name: str) -> None:
            loads.append(name)
            super().__init__(name)

    monkeypatch.setattr(tokenizer, "Encoding", Counted)
    got: list[Encoding] = []

    def first_count() -> None:
        got.append(encoding_for("gpt-4o"))

    threads = [threading.Thread(target=first_count) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert loads == ["o200k_base"]
    assert len(got) == 4
    assert all(encoding is got[0] for encoding in got)


def test_the_cache_of_merged_pieces_stays_bounded(reference: dict[str, Any]) -> None:
    encoding = Encoding("cl100k_base")
    # Made-up words (several tokens each), more of them than the cache holds.
    letters = "bcdfghjklmnpqrstvwxz"
    words = [
        "zq" + "".join(letters[i // 20**k % 20] for k in range(4))
        for i in range(tokenizer._CACHED_PIECES + 500)
    ]
    text = " ".join(words)
    assert encoding.count(text[:20_000]) == expected(reference, "cl100k_base", text[:20_000])
    for start in range(0, len(text), 20_000):
        encoding.count(text[start : start + 20_000])
    assert 0 < len(encoding._merged) <= tokenizer._CACHED_PIECES
    assert encoding.count(text[:20_000]) == expected(reference, "cl100k_base", text[:20_000])


def test_an_encoding_costs_a_few_megabytes_resident() -> None:
    # In a fresh interpreter: what the first count adds to the resident set.
    script = """
import os
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
from gateway.upstream.tokenizer import count_messages
before = rss()
count_messages([{"role": "user", "content": "Bonjour, 世界! 🚀"}], "gpt-4o-mini")
print((rss() - before) / 2**20)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert float(done.stdout) < 12, done.stdout  # bpe-openai: ~130 MB; this: ~6 MB
