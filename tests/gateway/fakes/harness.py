"""The fake OpenAI server on a real uvicorn server (a thread), and clients that speak to it."""

from __future__ import annotations

import re
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import openai

from gateway.fakes.openai_server import FakeOpenAIConfig, create_app
from tests.support.threaded_uvicorn import serving_in_thread

KEY = "sk-test-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}
MODEL = "gpt-4o-mini"
CHAT = "/v1/chat/completions"
# Loading the CA bundle costs ~45 ms per client; the fake is plain HTTP, so share one context.
TLS = ssl.create_default_context()


@dataclass
class Fake:
    base_url: str

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        kwargs.setdefault("headers", AUTH)
        kwargs.setdefault("timeout", 5)
        return httpx.AsyncClient(base_url=self.base_url, verify=TLS, **kwargs)

    def sdk(self, api_key: str = KEY) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            api_key=api_key,
            base_url=f"{self.base_url}/v1",
            max_retries=0,
            http_client=openai.DefaultAsyncHttpxClient(verify=TLS),
        )


@contextmanager
def running_fake(config: FakeOpenAIConfig) -> Iterator[Fake]:
    """A real uvicorn server for ``config`` on a free port, in a background thread."""
    app = create_app(config)
    with serving_in_thread(app, access_log=False, lifespan="on") as port:
        yield Fake(f"http://127.0.0.1:{port}")


def chat_body(content: str = "Hello there", /, **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": content}], **extra}


def parse_sse(raw: bytes) -> list[str]:
    """The ``data`` payloads of a complete SSE body, asserting the exact framing."""
    text = raw.decode()
    assert re.fullmatch(r"(data: [^\n]+\n\n)+", text), text[:300]
    return [event.removeprefix("data: ") for event in text.split("\n\n") if event]


async def stream_chat(client: httpx.AsyncClient, body: dict[str, Any]) -> list[str]:
    async with client.stream("POST", CHAT, json={**body, "stream": True}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        return parse_sse(await response.aread())
