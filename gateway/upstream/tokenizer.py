r"""Counting prompt tokens as OpenAI's tokenizers do (o200k_base, cl100k_base), offline, in ~6 MB.

The count reserves a request's tokens before the upstream call (``services.metering``) and
trims conversation histories to a budget (``flows.history``). It runs in the gateway process,
whose idle footprint is capped (issue #8), and the tokenizer libraries hold the 200k-token
vocabulary in large hash maps and automata: resident, bpe-openai takes ~130 MB, tiktoken
~55 MB, quicktok ~65 MB. This module runs the same byte-pair encoding over compact tables:

- The vocabulary is OpenAI's own ``.tiktoken`` file, shipped in ``encodings/`` (uncompressed,
  each has the SHA-256 that tiktoken checks), held as one bytes object (the tokens in rank
  order), their offsets, and an open-addressing hash table from a token's bytes to its rank.
- Text is split with the encoding's pre-tokenizing expression (tiktoken's ``pat_str``). The
  standard ``re`` has no ``\p{..}``: the classes are spelt out for the BMP from
  ``unicodedata``, and a character beyond the BMP (an emoji, a CJK extension, a historic
  script) is matched through a BMP stand-in of its general category.
- Each piece that is not itself a token is merged as tiktoken does: the adjacent pair of parts
  with the lowest rank first, the leftmost on a tie.

The counts are tiktoken's and bpe-openai's (``tests/gateway/upstream/test_tokenizer.py``
compares them), but for characters that Python's Unicode database does not know yet. Special
tokens (``<|endoftext|>``) count as plain text, as in a chat message. Loading an encoding
takes ~0.4 s (``metering`` does it in a worker thread); counting runs at 2-5 MB/s for English
and code, 0.4-1 MB/s for other scripts. Past ``EXACT_BYTES`` (32 kB) a prompt is counted on
samples of its texts and extrapolated (within ~3%), so that no prompt costs more than tens of
milliseconds: the reservation is settled to the upstream's usage anyway.
"""

from __future__ import annotations

import base64
import gzip
import heapq
import math
import re
import threading
import unicodedata
from array import array
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Final

# Per OpenAI's cookbook: each message costs its content plus ~3 framing tokens, and the
# reply is primed with 3 more.
_PER_MESSAGE = 3
_REPLY_PRIMER = 3

#: The UTF-8 bytes one count encodes at most (~10 ms of English, ~75 ms of Thai): past them,
#: the texts are counted on samples (in proportion to their sizes) and extrapolated.
EXACT_BYTES: Final = 32_768
#: Prompts up to this size are counted in the event loop (~1 ms at most); larger ones in a
#: worker thread (``fits_inline``).
INLINE_BYTES: Final = 4_096

_DATA = Path(__file__).with_name("encodings")
#: The mergeable tokens of each encoding (their ranks are 0 to n - 1, in file order).
_SIZES: Final = {"o200k_base": 199_998, "cl100k_base": 100_256}

# tiktoken's patterns, with each class written in brackets so that \p{..} and \s can be
# replaced by a bracket's contents (and \S by [^\s], $ by \Z: the end of the text).
_PATTERNS: Final = {
    "o200k_base": "|".join(
        [
            r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
            r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
            r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
            r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
            r"[\p{N}]{1,3}",
            r" ?[^\s\p{L}\p{N}]+[\r\n/]*",
            r"[\s]*[\r\n]+",
            r"[\s]+(?![^\s])",
            r"[\s]+",
        ]
    ),
    "cl100k_base": (
        r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+[\p{L}]++|[\p{N}]{1,3}+"
        r"| ?[^\s\p{L}\p{N}]++[\r\n]*+|[\s]++\Z|[\s]*[\r\n]|[\s]+(?![^\s])|[\s]"
    ),
}

# Unicode's White_Space (Python's str.isspace() also takes U+001C-U+001F; Rust's \s does not).
_WHITESPACE: Final = r"\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_CLASSES: Final = {
    "L": ("Lu", "Ll", "Lt", "Lm", "Lo"),
    "M": ("Mn", "Mc", "Me"),
    "N": ("Nd", "Nl", "No"),
}

# A BMP character of each general category: a character beyond the BMP is matched as its
# stand-in (no whitespace lies beyond the BMP; "other" is a symbol, in none of the classes).
_STAND_INS: Final = {
    "Lu": "\u00c0",
    "Ll": "\u00e0",
    "Lt": "\u01c5",
    "Lm": "\u02b0",
    "Lo": "\u05d0",
    "Mn": "\u0300",
    "Mc": "\u0903",
    "Me": "\u20dd",
    "Nd": "\u0660",
    "Nl": "\u2160",
    "No": "\u00b2",
}
_OTHER: Final = "\u00a6"
_ASTRAL: Final = re.compile("[\U00010000-\U0010ffff]")
_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def _stand_in(match: re.Match[str]) -> str:
    return _STAND_INS.get(unicodedata.category(match[0]), _OTHER)


def _category_runs() -> list[tuple[str, int, int]]:
    """The BMP as runs of one general category: (category, first, last)."""
    category = unicodedata.category
    runs: list[tuple[str, int, int]] = []
    current, first = category("\0"), 0
    for code in range(1, 0x10000):
        cat = category(chr(code))
        if cat != current:
            runs.append((current, first, code - 1))
            current, first = cat, code
    runs.append((current, first, 0xFFFF))
    return runs


def _class_body(runs: list[tuple[str, int, int]], categories: Iterable[str]) -> str:
    wanted = set(categories)
    ranges: list[list[int]] = []
    for cat, first, last in runs:
        if cat in wanted:
            if ranges and ranges[-1][1] == first - 1:
                ranges[-1][1] = last
            else:
                ranges.append([first, last])
    return "".join(f"\\u{a:04x}" if a == b else f"\\u{a:04x}-\\u{b:04x}" for a, b in ranges)


def _compile(pattern: str) -> re.Pattern[str]:
    runs = _category_runs()
    bodies: dict[str, str] = {}

    def body(match: re.Match[str]) -> str:
        # A run of \p{..} in a bracket as one list of ranges: fewer, so a lighter compile.
        if match[0] not in bodies:
            names = re.findall(r"\\p\{(\w+)\}", match[0])
            categories = [c for name in names for c in _CLASSES.get(name, (name,))]
            bodies[match[0]] = _class_body(runs, categories)
        return bodies[match[0]]

    spelt = re.sub(r"(?:\\p\{\w+\})+", body, pattern).replace(r"\s", _WHITESPACE)
    return re.compile(spelt)


class _Vocabulary:
    """Token bytes to rank, in one blob, its offsets and a hash table (~4.5 MB for o200k)."""

    __slots__ = ("_blob", "_mask", "_offsets", "_pairs", "_table")

    def __init__(self, tokens: Iterable[bytes]) -> None:
        blob = bytearray()
        offsets = array("I", [0])
        for token in tokens:
            blob += token
            offsets.append(len(blob))
        self._blob = data = bytes(blob)
        del blob
        self._offsets = offsets
        size = len(offsets) - 1
        # A power of two over twice the tokens: a load factor under 1/2, short probes.
        self._mask = mask = (1 << (2 * size).bit_length()) - 1
        self._table = table = array("i", [-1]) * (mask + 1)
        # The rank of each two-byte token, at (first byte << 8 | second): where merges start.
        self._pairs = pairs = array("i", [-1]) * 0x10000
        for rank in range(size):
            token = data[offsets[rank] : offsets[rank + 1]]
            slot = hash(token) & mask
            while table[slot] >= 0:
                slot = (slot + 1) & mask
            table[slot] = rank
            if len(token) == 2:
                pairs[token[0] << 8 | token[1]] = rank

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def rank(self, token: bytes) -> int:
        """The token's rank, or -1 when these bytes are not a token."""
        table, mask, data, offsets = self._table, self._mask, self._blob, self._offsets
        slot = hash(token) & mask
        while (rank := table[slot]) >= 0:
            if data[offsets[rank] : offsets[rank + 1]] == token:
                return rank
            slot = (slot + 1) & mask
        return -1

    def merged(self, piece: bytes) -> int:
        """How many tokens ``piece`` encodes to: tiktoken's merge loop, in O(n log n).

        The lowest-ranked adjacent pair of parts merges first, the leftmost on a tie (a heap
        of (rank, start, end), the pairs that have changed since they were pushed skipped).
        The rank look-ups are ``rank`` inlined: this is the hot loop.
        """
        table, mask, data, offsets, two = (
            self._table,
            self._mask,
            self._blob,
            self._offsets,
            self._pairs,
        )
        n = len(piece)
        # The parts are piece[i:end[i]] for each i that starts one (end[i] is -1 for the
        # others); before[i] is where the part before the one at i starts.
        end = list(range(1, n + 1))
        before = list(range(-1, n - 1))
        heap: list[tuple[int, int, int]] = []
        for i in range(n - 1):
            rank = two[piece[i] << 8 | piece[i + 1]]
            if rank >= 0:
                heap.append((rank, i, i + 2))
        heapq.heapify(heap)
        pop, push = heapq.heappop, heapq.heappush
        parts = n
        while heap:
            _, i, stop = pop(heap)
            middle = end[i]
            if middle < 0 or middle >= n or end[middle] != stop:
                continue
            end[i], end[middle] = stop, -1
            parts -= 1
            if stop < n:
                before[stop] = i
                after = end[stop]
                token = piece[i:after]
                slot = hash(token) & mask
                while (rank := table[slot]) >= 0:
                    if data[offsets[rank] : offsets[rank + 1]] == token:
                        push(heap, (rank, i, after))
                        break
                    slot = (slot + 1) & mask
            first = before[i]
            if first >= 0:
                token = piece[first:stop]
                slot = hash(token) & mask
                while (rank := table[slot]) >= 0:
                    if data[offsets[rank] : offsets[rank + 1]] == token:
                        push(heap, (rank, first, stop))
                        break
                    slot = (slot + 1) & mask
        return parts


def _utf8_size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _read_tokens(name: str) -> Iterable[bytes]:
    with gzip.open(_DATA / f"{name}.tiktoken.gz") as lines:
        for line in lines:
            token, _rank = line.split()
            yield base64.b64decode(token)


#: Pieces that are not one token, and what they merged into (a few hundred kB at most).
_CACHED_PIECES: Final = 4096
#: A long prompt's texts are counted on samples of this many characters at least, in this
#: many windows at most.
_MIN_SAMPLE: Final = 64
_WINDOWS: Final = 16


class Encoding:
    def __init__(self, name: str) -> None:
        self.name = name
        self._vocabulary = _Vocabulary(_read_tokens(name))
        if len(self._vocabulary) != _SIZES[name]:
            raise RuntimeError(f"{name}: {len(self._vocabulary)} tokens, not {_SIZES[name]}")
        self._pattern = _compile(_PATTERNS[name])
        self._merged: dict[bytes, int] = {}

    def count(self, text: str) -> int:
        """The tokens ``text`` encodes to (extrapolated past ``EXACT_BYTES``)."""
        return self.count_all([text])

    def count_all(self, texts: Sequence[str]) -> int:
        """The tokens of all ``texts``, encoding about ``EXACT_BYTES`` of them at most.

        Past that, each text is counted on a sample, the same share of each (``_MIN_SAMPLE``
        characters at least, in up to ``_WINDOWS`` windows spread over it), and extrapolated;
        once the budget is spent, the texts left are estimated at the tokens per character
        seen so far.
        """
        whole = sum(map(_utf8_size, texts))
        if whole <= EXACT_BYTES:
            return sum(self._count(text) for text in texts)
        share = EXACT_BYTES / whole
        budget = EXACT_BYTES
        total = seen_tokens = seen_chars = 0
        for text in texts:
            if not text:
                continue
            if budget <= 0:
                total += math.ceil(len(text) * seen_tokens / seen_chars)
                continue
            windows = self._sample(text, max(_MIN_SAMPLE, math.ceil(len(text) * share)))
            counted = sum(map(self._count, windows))
            chars = sum(map(len, windows))
            budget -= sum(map(_utf8_size, windows))
            seen_tokens += counted
            seen_chars += chars
            total += math.ceil(counted * len(text) / chars)
        return total

    @staticmethod
    def _sample(text: str, size: int) -> list[str]:
        """``size`` characters of ``text`` (all of it if shorter), in windows spread over it."""
        if size >= len(text):
            return [text]
        windows = max(1, min(_WINDOWS, size // _MIN_SAMPLE))
        width, step = size // windows, len(text) // windows
        return [text[i * step : i * step + width] for i in range(windows)]

    def _count(self, text: str) -> int:
        if text.isascii():
            return self._count_pieces(self._pattern.findall(text))
        if _SURROGATE.search(text):
            # Lone surrogates (from JSON escapes) as U+FFFD, as tiktoken encodes them.
            text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        if not _ASTRAL.search(text):
            return self._count_pieces(self._pattern.findall(text))
        scanned = _ASTRAL.sub(_stand_in, text)  # the same length: the spans are the text's
        return self._count_pieces(
            text[match.start() : match.end()] for match in self._pattern.finditer(scanned)
        )

    def _count_pieces(self, pieces: Iterable[str]) -> int:
        rank, merge, merged = self._vocabulary.rank, self._vocabulary.merged, self._merged
        total = 0
        for piece in pieces:
            token = piece.encode("utf-8")
            if rank(token) >= 0:
                total += 1
                continue
            parts = merged.get(token)
            if parts is None:
                if len(merged) >= _CACHED_PIECES:
                    merged.clear()
                parts = merged[token] = merge(token)
            total += parts
        return total


# GPT-4 (not 4o, 4.1, 4.5), GPT-3.5 and the embeddings; every other model is on o200k_base.
_CL100K_PREFIXES: Final = (
    "gpt-4-",
    "gpt-3.5",
    "gpt-35",
    "text-embedding-",
    "davinci-0",
    "babbage-0",
)


def encoding_name(model: str) -> str:
    """The encoding of ``model`` (a fine-tune's, ``ft:gpt-4o-mini:...``, is its base's)."""
    name = model.lower().removeprefix("ft:")
    if name == "gpt-4" or name.startswith(_CL100K_PREFIXES):
        return "cl100k_base"
    return "o200k_base"


_encodings: dict[str, Encoding] = {}
_loading = threading.Lock()


def encoding_for(model: str) -> Encoding:
    """The model's encoding, loaded on first use (~0.4 s; only token or cost limits need it)."""
    name = encoding_name(model)
    encoding = _encodings.get(name)
    if encoding is None:
        with _loading:
            encoding = _encodings.get(name)
            if encoding is None:
                encoding = _encodings[name] = Encoding(name)
    return encoding


def is_loaded(model: str) -> bool:
    return encoding_name(model) in _encodings


def warm_up(model: str) -> None:
    encoding_for(model)


def _contents(messages: Sequence[dict[str, Any]]) -> list[str]:
    return [str(message.get("content") or "") for message in messages]


def count_text(text: str, model: str) -> int:
    return encoding_for(model).count(text)


def count_messages(messages: Sequence[dict[str, Any]], model: str) -> int:
    """The prompt tokens of ``messages``: contents and roles, ~3 tokens of framing each, 3 more.

    Additive past the primer: the count of a list is 3 plus the counts of its messages alone
    (``flows.history`` relies on it), while the contents are within ``EXACT_BYTES``.
    """
    encoding = encoding_for(model)
    roles = sum(encoding.count(str(message.get("role") or "")) for message in messages)
    return (
        _REPLY_PRIMER
        + _PER_MESSAGE * len(messages)
        + roles
        + encoding.count_all(_contents(messages))
    )


def fits_inline(messages: Sequence[dict[str, Any]], model: str) -> bool:
    """Whether counting ``messages`` is quick (the encoding loaded, a small prompt)."""
    return is_loaded(model) and sum(map(_utf8_size, _contents(messages))) <= INLINE_BYTES
