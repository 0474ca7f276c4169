from __future__ import annotations

import pytest

from gateway.core.errors import InvalidRequest, NotFound
from gateway.services import quotas
from gateway.services.views import QuotaLimits
from gateway.storage.database import Database
from tests.gateway.services.conftest import register

UNLIMITED = QuotaLimits().numeric()


async def _numeric(db: Database, name: str = "demo") -> dict[str, int | float | None]:
    return (await quotas.get_limits(db, app_name=name)).numeric()


pytestmark = pytest.mark.anyio


async def test_an_app_without_quota_is_unlimited(database: Database) -> None:
    await register(database, "demo")
    assert await _numeric(database) == UNLIMITED


async def test_set_stores_every_limit(database: Database) -> None:
    await register(database, "demo")
    limits = QuotaLimits(
        rpm=60, tpm=10_000, tokens_per_day=1_000_000, max_concurrent=4, budget_usd_month=25.5
    )
    stored = await quotas.set_quota(database, app_name="demo", changes=limits)
    assert stored.numeric() == limits.numeric()
    assert await _numeric(database) == limits.numeric()


async def test_limits_not_given_keep_their_value_and_zero_clears(database: Database) -> None:
    await register(database, "demo")
    await quotas.set_quota(database, app_name="demo", changes=QuotaLimits(rpm=60, tpm=1000))
    await quotas.set_quota(database, app_name="demo", changes=QuotaLimits(max_concurrent=2))
    assert await _numeric(database) == QuotaLimits(rpm=60, tpm=1000, max_concurrent=2).numeric()
    await quotas.set_quota(database, app_name="demo", changes=QuotaLimits(rpm=0))
    assert await _numeric(database) == QuotaLimits(tpm=1000, max_concurrent=2).numeric()


async def test_quotas_are_per_app(database: Database) -> None:
    await register(database, "demo")
    await register(database, "other")
    await quotas.set_quota(database, app_name="demo", changes=QuotaLimits(rpm=1))
    assert await _numeric(database, "other") == UNLIMITED


NEGATIVE = [
    (QuotaLimits(rpm=-1), "--rpm"),
    (QuotaLimits(tpm=-1), "--tpm"),
    (QuotaLimits(tokens_per_day=-1), "--tokens-per-day"),
    (QuotaLimits(max_concurrent=-1), "--max-concurrent"),
    (QuotaLimits(budget_usd_month=-0.01), "--budget-usd-month"),
    (QuotaLimits(rpm=10, tpm=-1), "--tpm"),  # nothing is written when one value is bad
]


async def test_negative_limits_are_refused_and_nothing_changes(database: Database) -> None:
    await register(database, "demo")
    await quotas.set_quota(database, app_name="demo", changes=QuotaLimits(rpm=5))
    for changes, option in NEGATIVE:
        with pytest.raises(InvalidRequest, match=f"^{option} cannot be negative"):
            await quotas.set_quota(database, app_name="demo", changes=changes)
    assert await _numeric(database) == QuotaLimits(rpm=5).numeric()


async def test_an_unknown_app_is_not_found(database: Database) -> None:
    with pytest.raises(NotFound, match="No app named 'nope'"):
        await quotas.set_quota(database, app_name="nope", changes=QuotaLimits(rpm=1))
    with pytest.raises(NotFound, match="No app named 'nope'"):
        await quotas.get_limits(database, app_name="nope")
