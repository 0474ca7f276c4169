"""In-process stand-ins for the flows' unit tests: a moderator and messages (the scripted
upstream is tests/support/upstream.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.upstream.types import ChatRequest


@dataclass
class WordModerator:
    """Flags any text containing FLAGGED, like the project's fake."""

    texts: list[str] = field(default_factory=list)

    async def moderate(self, base_url: str, api_key: str, text: str) -> bool:
        self.texts.append(text)
        return "FLAGGED" in text


def request(*messages: dict[str, str], model: str = "gpt-4o-mini") -> ChatRequest:
    return ChatRequest(
        base_url="http://upstream.test/v1",
        api_key="sk-test",
        model=model,
        messages=list(messages),
        max_tokens=100,
    )


def user(content: str) -> dict[str, str]:
    return {"role": "user", "content": content}


def assistant(content: str) -> dict[str, str]:
    return {"role": "assistant", "content": content}


def system(content: str) -> dict[str, str]:
    return {"role": "system", "content": content}
