"""One answer's quota: its reservation, the hard cap it imposes, its settlement (its lease is
kept alive by the limiter's heartbeat, gateway.services.leases, until it settles)."""

from __future__ import annotations

import anyio

from gateway.core.quota_policy import LimitState
from gateway.services.limiter import Admission, Limiter
from gateway.services.views import QuotaLimits
from gateway.upstream.tokenizer import count_messages, fits_inline
from gateway.upstream.types import ChatRequest, Usage


async def count_prompt(request: ChatRequest) -> int:
    """The prompt's tokens, counted in a worker thread when that takes more than a moment
    (the encoding's first load, ~0.3 s; a long prompt), so the event loop goes on meanwhile."""
    if fits_inline(request.messages, request.model):
        return count_messages(request.messages, request.model)
    return await anyio.to_thread.run_sync(count_messages, request.messages, request.model)


def priced_model(reported: object, request: ChatRequest | None) -> str:
    """The model to price: the one that answered, under the name it was asked for.

    Upstreams answer with dated snapshot names (gpt-4o-mini-2024-07-18), and a fallback may
    have answered instead of the model asked for: the longest of the requested and fallback
    names that the reported model starts with.
    """
    if not isinstance(reported, str):  # checked at the boundary; never crash settling
        return request.model if request is not None else ""
    if request is None:
        return reported
    candidates = (request.model, *request.fallback_models)
    matching = [m for m in candidates if reported.startswith(m)]
    return max(matching, key=len) if matching else request.model


class QuotaMeter:
    def __init__(
        self, limiter: Limiter, *, app_id: str, quota: QuotaLimits, user: str | None = None
    ) -> None:
        self._limiter = limiter
        self._app_id = app_id
        self._quota = quota
        self._user = user
        self._admission: Admission | None = None
        self._settled = False
        #: The prompt counted with the real tokenizer (only when a token or cost limit needs it).
        self.prompt_estimate: int | None = None

    @property
    def states(self) -> tuple[LimitState, ...]:
        return () if self._admission is None else self._admission.states

    async def reserve(self, request: ChatRequest, *, max_output_tokens: int) -> None:
        """Hold the request's tokens and cost before the upstream call (QuotaExceeded if not)."""
        prompt_tokens = 0
        if self._limiter.needs_token_estimate(self._quota, user=self._user):
            prompt_tokens = await count_prompt(request)
            self.prompt_estimate = prompt_tokens
        self._admission = await self._limiter.reserve(
            self._app_id,
            self._quota,
            model=request.model,
            prompt_tokens=prompt_tokens,
            max_tokens=request.max_tokens or max_output_tokens,
            user=self._user,
        )

    def over(self, content_chunks: int) -> bool:
        """Hard cap: would ``content_chunks`` tokens pass what the reservation holds?"""
        admission = self._admission
        if admission is None or admission.token_cap is None:
            return False
        prompt = self.prompt_estimate or 0
        if prompt + content_chunks > admission.token_cap:
            return True
        if admission.cost_micros:
            cost = self._limiter.cost_micros(admission.model, prompt, content_chunks)
            return cost > admission.cost_micros
        return False

    async def settle(self, usage: Usage, *, model: str) -> None:
        """Replace the reservation by the real usage, priced as ``model``; once."""
        if self._admission is None or self._settled:
            return
        self._settled = True
        await self._limiter.settle(
            self._admission,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            model=model,
        )
