from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from gateway.upstream.fetch import GuardedFetcher
from tests.support.oidc_provider import OidcProvider


class FakeClock:
    """The verifier's monotonic clock, moved by the test (fetch intervals without sleeping)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def provider() -> Iterator[OidcProvider]:
    with OidcProvider.running() as running:
        yield running


@pytest.fixture
async def fetcher() -> AsyncIterator[GuardedFetcher]:
    fetcher = GuardedFetcher(connect_timeout=2.0)
    yield fetcher
    await fetcher.aclose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
