"""What an answer costs, from a per-model price table. An unknown model is never free."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gateway.core.errors import ConfigurationError
from gateway.core.quota_policy import MICROS


@dataclass(frozen=True, slots=True)
class Price:
    input_per_million: float
    output_per_million: float


class PriceTable:
    def __init__(self, prices: Mapping[str, Price]) -> None:
        self._prices = dict(prices)

    def knows(self, model: str) -> bool:
        # A model name comes from an upstream's answer: anything but a string is unknown.
        return isinstance(model, str) and model in self._prices

    def price(self, model: str) -> Price:
        price = self._prices.get(model)
        if price is None:
            raise ConfigurationError(
                f"No price for model {model!r}: add it to the `prices` table of the configuration "
                "(a budget cannot be enforced on an unpriced model)."
            )
        return price

    def cost_micros(self, model: str, prompt_tokens: int, completion_tokens: int) -> int:
        """Cost in micro-dollars, rounded up (a budget is never under-charged)."""
        price = self.price(model)
        # price per million tokens == micro-dollars per token; a negative count costs nothing
        micros = (
            max(0, prompt_tokens) * price.input_per_million
            + max(0, completion_tokens) * price.output_per_million
        )
        whole = int(micros)
        return whole if whole == micros else whole + 1

    @staticmethod
    def to_usd(micros: int) -> float:
        return micros / MICROS
