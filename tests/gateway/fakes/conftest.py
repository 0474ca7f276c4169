"""Fixtures of the fake's tests: a shared fake (tokens=8) and fakes started per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from gateway.fakes.openai_server import FakeOpenAIConfig
from tests.gateway.fakes.harness import Fake, running_fake


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def fake() -> Iterator[Fake]:
    with running_fake(FakeOpenAIConfig(tokens=8)) as running:
        yield running


@pytest.fixture
def start_fake() -> Iterator[Callable[[FakeOpenAIConfig], Fake]]:
    with_stack: list[Any] = []

    def start(config: FakeOpenAIConfig) -> Fake:
        context = running_fake(config)
        with_stack.append(context)
        return context.__enter__()

    yield start
    for context in reversed(with_stack):
        context.__exit__(None, None, None)
