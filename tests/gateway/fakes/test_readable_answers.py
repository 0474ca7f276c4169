"""The fake's readable mode (``--answers readable``): Markdown documents, streamed in chunks."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from gateway.fakes.openai_server import FakeOpenAIConfig
from gateway.fakes.readable import TOPICS
from tests.gateway.fakes.harness import Fake, chat_body, stream_chat

pytestmark = pytest.mark.anyio

ORCHESTRA = Path(sys.executable).parent / "orchestra"

StartFake = Callable[[FakeOpenAIConfig], Fake]


@pytest.fixture
def readable(start_fake: StartFake) -> Fake:
    return start_fake(FakeOpenAIConfig(answers="readable", tokens=8))


def contents(events: list[str]) -> list[str]:
    """The content of each content chunk, in order."""
    found: list[str] = []
    for data in events[:-1]:  # the last one is [DONE]
        choices = json.loads(data)["choices"]
        content = choices[0]["delta"].get("content") if choices else None
        if content:
            found.append(content)
    assert events[-1] == "[DONE]"
    return found


def assert_renderable_markdown(text: str) -> None:
    """What a Markdown renderer must show: a heading, a list, a table, a fenced code block
    with a language (and the fence closed)."""
    assert re.search(r"^#{1,3} \S", text, re.MULTILINE), text
    assert re.search(r"^(- |1\. )\S", text, re.MULTILINE), text
    assert re.search(r"^\| .+ \|\n\| (:?-+:? \| )+", text, re.MULTILINE), text
    fences = re.findall(r"^```(\w*)$", text, re.MULTILINE)
    assert len(fences) == 2 and fences[0] and not fences[1], fences


async def test_every_readable_answer_is_markdown_a_renderer_must_handle(readable: Fake) -> None:
    prompts = ["Tell me about streaming", "What about quotas?", "Show me Python code", "Hello"]
    answers: list[str] = []
    async with readable.client() as client:
        for prompt in prompts:
            answers.append("".join(contents(await stream_chat(client, chat_body(prompt)))))
    assert len(set(answers)) == len(TOPICS) == len(prompts)  # one topic per keyword
    for answer in answers:
        assert_renderable_markdown(answer)
    assert "```python\n" in answers[2] and "```bash\n" in answers[1]


async def test_the_same_prompt_gets_the_same_answer_and_others_vary(readable: Fake) -> None:
    async with readable.client() as client:
        first = contents(await stream_chat(client, chat_body("an unrelated question 1")))
        again = contents(await stream_chat(client, chat_body("an unrelated question 1")))
        others = {
            "".join(contents(await stream_chat(client, chat_body(f"something else {n}"))))
            for n in range(12)
        }
    assert first == again
    assert len(others) > 1, "the hash never picks another document"


async def test_an_answer_streams_in_small_chunks(readable: Fake) -> None:
    async with readable.client() as client:
        chunks = contents(await stream_chat(client, chat_body("quota table")))
    assert len(chunks) > 50
    assert max(len(chunk.strip()) for chunk in chunks) <= 40
    # Table rows and code arrive in pieces, never as one chunk.
    assert not any(chunk.count("|") > 1 for chunk in chunks)


async def test_usage_counts_the_chunks_and_max_tokens_cuts_the_document(readable: Fake) -> None:
    async with readable.client() as client:
        whole = await client.post("/v1/chat/completions", json=chat_body("python code"))
        cut = await client.post("/v1/chat/completions", json=chat_body("python code", max_tokens=5))
        streamed = contents(await stream_chat(client, chat_body("python code")))
    choice = whole.json()["choices"][0]
    assert choice["message"]["content"] == "".join(streamed)
    assert choice["finish_reason"] == "stop"
    assert whole.json()["usage"]["completion_tokens"] == len(streamed)
    assert cut.json()["choices"][0]["finish_reason"] == "length"
    assert cut.json()["choices"][0]["message"]["content"] == "".join(streamed[:5])


async def test_directives_still_apply_in_readable_mode(readable: Fake) -> None:
    async with readable.client() as client:
        xss = contents(await stream_chat(client, chat_body("hi [xss]")))
        short = contents(await stream_chat(client, chat_body("hello [tokens:3]")))
        failed = await client.post("/v1/chat/completions", json=chat_body("x [fail:503]"))
    assert "".join(xss) == "<img src=x onerror=alert(1)>"
    assert len(short) == 3
    assert failed.status_code == 503


async def test_the_default_stays_random_words(fake: Fake) -> None:
    async with fake.client() as client:
        chunks = contents(await stream_chat(client, chat_body("show me a python table")))
    assert len(chunks) == 8 and all(re.fullmatch(r"[a-z]+ ", chunk) for chunk in chunks)


def test_an_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="answers"):
        FakeOpenAIConfig(answers="poetry")
    result = subprocess.run(
        [str(ORCHESTRA), "fake-openai", "--answers", "poetry", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode != 0
    assert "readable" in result.stderr + result.stdout


async def test_the_cli_flag_serves_readable_answers(tmp_path: Path) -> None:
    from tests.gateway.http.conftest import child_env, free_port, spawn

    server = spawn(
        "readable",
        ["fake-openai", "--answers", "readable", "--token-ms", "1"],
        child_env({}),
        tmp_path,
        free_port(),
    )
    try:
        await server.wait_ready_async("/_fake/health")
        async with httpx.AsyncClient(
            base_url=server.url, headers={"Authorization": "Bearer sk-x"}
        ) as client:
            answer = "".join(contents(await stream_chat(client, chat_body("stream events"))))
    finally:
        server.stop()
    assert_renderable_markdown(answer)
    assert answer.startswith("## Streaming answers")
