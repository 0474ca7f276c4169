"""Redaction: every secret shape the gateway knows goes, ordinary ids and words stay, and a
known key goes by value (whole, masked or in pieces of 8+ characters) whatever its form."""

from __future__ import annotations

import secrets
import uuid

import pytest
from cryptography.fernet import Fernet

from gateway.core.ids import new_app_id, new_request_id, new_token_id
from gateway.core.redact import MIN_PIECE, REDACTED, Redactor, redact_text
from gateway.security.tokens import generate

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def arbitrary_key(length: int = 40) -> str:
    """A key of no known shape (some compatible servers hand out such keys)."""
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def jwt() -> str:
    return "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhcHBfMSJ9." + secrets.token_urlsafe(32)


def openai_mask(key: str) -> str:
    """How OpenAI's 401 shows a key: its start, stars, its last 4 characters."""
    return key[:8] + "*" * 20 + key[-4:]


SHAPED = {
    "sk": lambda: "sk-" + secrets.token_urlsafe(36),
    "sk-proj": lambda: "sk-proj-" + secrets.token_urlsafe(120),
    "sk-svcacct": lambda: "sk-svcacct-" + secrets.token_urlsafe(60),
    "azure (32 hex)": lambda: secrets.token_hex(16),
    "azure (32 HEX)": lambda: secrets.token_hex(16).upper(),
    "client token": lambda: generate().secret,
    "jwt": jwt,
    "fernet key": lambda: Fernet.generate_key().decode(),
    "fernet token": lambda: Fernet(Fernet.generate_key()).encrypt(b"sk-inner").decode(),
    "masked sk": lambda: "sk-abc" + "*" * 30 + "wxyz",
    "masked hex": lambda: "0a1b2" + "*" * 23 + "9f8e",
}


@pytest.mark.parametrize("kind", sorted(SHAPED))
@pytest.mark.parametrize(
    "template",
    [
        "{}",
        "Incorrect API key provided: {}. You can find your API key at https://x.test.",
        'header "Authorization: Bearer {}" refused',
        "api-key={}&api-version=2024-06-01",
        "(key: '{}')",
        "{}\nnext line",
    ],
)
def test_every_known_shape_is_redacted_wherever_it_stands(kind: str, template: str) -> None:
    secret = SHAPED[kind]()
    text = redact_text(template.format(secret))
    assert REDACTED in text
    assert secret not in text
    # No piece of it survives (the masked forms' stars excepted: they are no secret).
    pieces = (p for p in secret.split("*") if len(p) >= MIN_PIECE)
    assert not [p for p in pieces if p in text], text


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_a_bearer_credential_of_any_shape_is_redacted(scheme: str) -> None:
    credential = arbitrary_key(24)
    text = redact_text(f"Authorization: {scheme} {credential}")
    assert credential not in text
    assert text == f"Authorization: {REDACTED}"


ORDINARY = [
    "The upstream refused the request (HTTP 400)",
    "Rate limit reached for gpt-4o-mini in organization org-fakeorchestra on tokens per min",
    f"request {new_request_id()} of app {new_app_id()} with token {new_token_id()}",
    # OpenAI's request ids: req_ and 32 hex digits; trace ids glued to their parts.
    f"req_{secrets.token_hex(16)}",
    f"traceparent 00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01",
    f"conversation {uuid.uuid4()} and {uuid.uuid4().hex[:12]}",
    f"chatcmpl-{secrets.token_hex(14)}",
    # A SHA-256 digest (64 hex digits) and a git commit (40) are not Azure keys.
    secrets.token_hex(32),
    secrets.token_hex(20),
    "models: gpt-4o-2024-08-06, o1-mini, claude-3-5-sonnet-20241022, text-embedding-3-large",
    "task-queue disk-usage risk-free ask-me: words that hold sk- are not keys",
    "color_scheme, the orc_ prefix alone, eyJ alone, gAAAAA alone",
    "Bearer tokens are described in RFC 6750; bearer",
    "**bold** text, a rating of ** and a footnote*",
    "base64 padding= and a=b&c=d",
    "http://127.0.0.1:8000/v1/chat/completions?api-version=2024-06-01",
]


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_ids_and_words_are_left_alone(text: str) -> None:
    assert redact_text(text) == text


@pytest.mark.parametrize(
    "key",
    [
        "sk-" + secrets.token_urlsafe(36),
        "sk-proj-" + secrets.token_urlsafe(120),
        secrets.token_hex(16),
        arbitrary_key(40),
        arbitrary_key(12),
    ],
    ids=["sk", "sk-proj", "32 hex", "40 arbitrary", "12 arbitrary"],
)
def test_a_known_key_goes_by_value_whole_and_in_pieces(key: str) -> None:
    redact = Redactor(key)
    echoes = [
        f"Incorrect API key provided: {key}.",
        f"key {key}{key} twice, glued",
        f"prefix {key[:MIN_PIECE]}, suffix {key[-MIN_PIECE:]}, middle {key[2 : 2 + MIN_PIECE]}",
        f"masked {key[:9]}{'*' * 12}{key[-9:]}",
        f"quoted '{key[:-1]}' and cut …{key[1:]}",
    ]
    for echo in echoes:
        text = redact(echo)
        assert REDACTED in text, echo
        windows = {key[i : i + MIN_PIECE] for i in range(len(key) - MIN_PIECE + 1)}
        assert not [w for w in windows if w in text], (echo, text)


def test_the_value_rule_keeps_the_text_around_the_key() -> None:
    key = arbitrary_key(40)
    redact = Redactor(key)
    assert redact(f"before {key} after") == f"before {REDACTED} after"
    assert redact(f"{key}") == REDACTED
    # Glued to characters a key cannot hold: "a{piece}b" failed when the key went on with b.
    assert redact(f"({key[:10]}) {key[-8:]}.") == f"({REDACTED}) {REDACTED}."
    # Pieces shorter than MIN_PIECE are no secret: an unrelated text is untouched.
    assert redact(f"x {key[: MIN_PIECE - 1]} y") == f"x {key[: MIN_PIECE - 1]} y"
    assert redact("nothing here") == "nothing here"


def test_short_keys_go_whole_and_tiny_ones_are_ignored() -> None:
    assert Redactor("abc123")("the key abc123 was refused") == f"the key {REDACTED} was refused"
    assert Redactor("ab")("a tab and a cab") == "a tab and a cab"
    assert Redactor()("sk-" + "a" * 20) == REDACTED


def test_several_keys_are_redacted_together() -> None:
    first, second = secrets.token_hex(16), arbitrary_key(6)
    text = Redactor(first, second)(f"{first} and {second}")
    assert text == f"{REDACTED} and {REDACTED}"


@pytest.mark.parametrize("kind", ["client token", "sk", "azure (32 hex)", "jwt"])
def test_a_bearer_header_goes_whole_whatever_the_credential(kind: str) -> None:
    assert redact_text(f"Bearer {SHAPED[kind]()}") == REDACTED


def test_long_runs_are_judged_whole_and_offsets_hold_after_any_character() -> None:
    hex_key, fernet_key = secrets.token_hex(16), Fernet.generate_key().decode()
    text = f"é ✓ 日本 {hex_key} and {fernet_key}; {'x' * 40} {hex_key}-tail ok"
    assert redact_text(text) == (
        f"é ✓ 日本 {REDACTED} and {REDACTED}; {'x' * 40} {hex_key}-tail ok"
    )
    # 32 hex digits followed by padding, or 33 of them, are something else.
    assert redact_text(f"{hex_key}=") == f"{hex_key}="
    assert redact_text(f"{hex_key}a") == f"{hex_key}a"
    assert redact_text(f"'{hex_key}'") == f"'{REDACTED}'"
