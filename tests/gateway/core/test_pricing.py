"""Pricing never crashes on what an upstream reported: a record is written for every request."""

from __future__ import annotations

from gateway.core.pricing import Price, PriceTable
from gateway.services.metering import priced_model
from gateway.upstream.types import ChatRequest


def test_a_model_that_is_not_a_string_is_unknown_not_a_crash() -> None:
    table = PriceTable({"gpt-4o-mini": Price(0.15, 0.6)})
    assert not table.knows({"name": "gpt-4o-mini"})  # type: ignore[arg-type]
    assert not table.knows(["gpt-4o-mini"])  # type: ignore[arg-type]
    assert table.knows("gpt-4o-mini")


def test_negative_counts_cost_nothing() -> None:
    table = PriceTable({"m": Price(1.0, 2.0)})
    assert table.cost_micros("m", -5, -(10**9)) == 0
    assert table.cost_micros("m", 3, -1) == 3


def test_a_reported_model_that_is_not_a_string_is_priced_as_requested() -> None:
    request = ChatRequest(base_url="http://u/v1", api_key="k", model="gpt-4o-mini", messages=[])
    assert priced_model({"x": 1}, request) == "gpt-4o-mini"
    assert priced_model("gpt-4o-mini-2024-07-18", request) == "gpt-4o-mini"
