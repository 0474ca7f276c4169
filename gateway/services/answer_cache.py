"""The per-app answer cache: which requests it may answer, its keys, its hits' accounting.

Opt-in per app (``orchestra apps update APP --cache-ttl 10m``). A request is looked up when
the app answers directly (no workflow, no conversation), asks for one choice without log
probabilities, and is deterministic: no ``temperature`` above 0 unless the app was set
``--cache-nondeterministic`` (a request without one is taken as the app's usual call).
``Cache-Control: no-cache`` skips the lookup (the fresh answer replaces the cached one);
``no-store`` skips the cache altogether.

The key is a hash of everything that shapes the answer, the app's id first: the route, the
upstream URL, the model, the messages with the app's system prompt, max_tokens, temperature
and every other OpenAI field passed through (tools, top_p, response_format, seed...). So no
answer ever reaches another app, nor a request that differs in any of these.

Only plain text answers that ended normally (``stop`` or ``length``) are kept: tool calls and
cut or failed answers never are. A hit costs nothing upstream: it is recorded with
``cached: true``, no tokens and no cost, and counts toward the request rate (``rpm``, the
concurrency) but not toward tokens or budgets.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import orjson

from gateway.core.clock import utcnow
from gateway.observability.metrics import Metrics
from gateway.services.ask import AskInput, CallMeta, Delta, Done, chat_request, prompt_text
from gateway.services.interactions import InteractionRecord, InteractionRecorder
from gateway.services.limiter import Admission, Limiter
from gateway.services.tokens import AppContext
from gateway.storage.answer_cache import AnswerStore
from gateway.upstream.types import Completion, Usage

#: The response header that says whether the cache answered.
CACHE_HEADER = "X-Orchestra-Cache"
#: Answers that may be kept: they ended as the model meant them to.
_KEPT_FINISH = frozenset({"stop", "length"})
#: Request fields that ask for what a cached text answer does not hold.
_UNCACHEABLE_FIELDS = ("logprobs", "top_logprobs")


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    text: str
    finish_reason: str | None
    model: str
    usage: Usage

    def dumps(self) -> bytes:
        return orjson.dumps(
            {
                "text": self.text,
                "finish_reason": self.finish_reason,
                "model": self.model,
                "usage": [self.usage.prompt_tokens, self.usage.completion_tokens],
            }
        )

    @classmethod
    def loads(cls, data: bytes) -> CachedAnswer | None:
        try:
            raw = orjson.loads(data)
            prompt, completion = raw["usage"]
            return cls(raw["text"], raw["finish_reason"], raw["model"], Usage(prompt, completion))
        except (ValueError, KeyError, TypeError):
            return None  # written by another version: a miss


@dataclass(frozen=True, slots=True)
class CachePlan:
    """A request the cache may answer: its key, and whether to look it up or only store."""

    key: str
    ttl_s: int
    lookup: bool
    metric_model: str


def _directives(cache_control: str | None) -> set[str]:
    if not cache_control:
        return set()
    return {part.strip().split("=", 1)[0].lower() for part in cache_control.split(",")}


def cache_key(ctx: AppContext, inp: AskInput, route: str) -> tuple[str, str]:
    """(key, model): the key starts with the app's id. Raises ModelNotAllowed as a call would."""
    request = chat_request(ctx, inp, api_key="")
    material = {
        "app": ctx.app_id,  # in the digest too, not only its prefix
        "route": route,
        "base_url": ctx.base_url,
        "model": request.model,
        "messages": request.messages,
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "extra": request.extra,
    }
    digest = hashlib.sha256(orjson.dumps(material, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return f"{ctx.app_id}:{digest}", request.model


def plan_for(
    ctx: AppContext, inp: AskInput, route: str, cache_control: str | None
) -> CachePlan | None:
    """How the cache takes part in this request; None: not at all."""
    if ctx.cache_ttl_s <= 0 or ctx.workflow != "direct" or inp.conversation_id is not None:
        return None
    directives = _directives(cache_control)
    if "no-store" in directives:
        return None
    if inp.temperature is not None and inp.temperature > 0 and not ctx.cache_nondeterministic:
        return None
    if inp.extra.get("n", 1) != 1 or any(inp.extra.get(f) for f in _UNCACHEABLE_FIELDS):
        return None
    key, model = cache_key(ctx, inp, route)
    return CachePlan(key, ctx.cache_ttl_s, lookup="no-cache" not in directives, metric_model=model)


class AnswerCapture:
    """Collects a streamed answer's text as it goes out, to keep it once it is complete."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._plain = True

    def see(self, event: object) -> CachedAnswer | None:
        """Every event of ``Answer.events()``; the answer to keep at ``Done``, if it may be."""
        if isinstance(event, Delta):
            chunk = event.chunk
            if chunk.text:
                self._parts.append(chunk.text)
            elif '"tool_calls"' in chunk.raw or '"function_call"' in chunk.raw:
                self._plain = False
            return None
        if isinstance(event, Done) and self._plain and event.finish_reason in _KEPT_FINISH:
            return CachedAnswer("".join(self._parts), event.finish_reason, event.model, event.usage)
        return None


def keepable(completion: Completion) -> CachedAnswer | None:
    """A non-streamed answer to keep, if it is one plain text choice that ended normally."""
    choices = completion.raw.get("choices")
    if not isinstance(choices, list) or len(choices) != 1:
        return None
    message = choices[0].get("message") if isinstance(choices[0], dict) else None
    if not isinstance(message, dict) or message.get("tool_calls") or message.get("function_call"):
        return None
    if completion.finish_reason not in _KEPT_FINISH:
        return None
    return CachedAnswer(
        completion.text, completion.finish_reason, completion.model, completion.usage
    )


class AnswerCache:
    def __init__(
        self,
        store: AnswerStore,
        *,
        limiter: Limiter,
        recorder: InteractionRecorder,
        metrics: Metrics | None = None,
    ) -> None:
        self._store = store
        self._limiter = limiter
        self._recorder = recorder
        self._metrics = metrics

    async def lookup(self, ctx: AppContext, plan: CachePlan) -> CachedAnswer | None:
        found = await self._store.get(plan.key) if plan.lookup else None
        answer = None if found is None else CachedAnswer.loads(found)
        if self._metrics is not None:
            counter = self._metrics.cache_misses if answer is None else self._metrics.cache_hits
            counter.labels(ctx.app_name).inc()
        return answer

    async def keep(self, plan: CachePlan, answer: CachedAnswer) -> None:
        evicted = await self._store.put(plan.key, answer.dumps(), plan.ttl_s)
        if evicted and self._metrics is not None:
            self._metrics.cache_evictions.inc(evicted)

    async def admit(self, ctx: AppContext, plan: CachePlan) -> Admission:
        """A hit counts toward the request rate and concurrency, never tokens or budget:
        admitted holding no tokens, settled at once with none (QuotaExceeded on rpm)."""
        admission = await self._limiter.reserve(
            ctx.app_id,
            ctx.limits,
            model=plan.metric_model,
            prompt_tokens=0,
            max_tokens=0,
            user=ctx.user,
        )
        await self._limiter.settle(admission, prompt_tokens=0, completion_tokens=0)
        return admission

    def record_hit(
        self, ctx: AppContext, inp: AskInput, meta: CallMeta, plan: CachePlan, hit: CachedAnswer
    ) -> None:
        keep_text = ctx.log_content == "full"
        elapsed_ms = (time.perf_counter() - meta.started) * 1000
        self._recorder.record(
            InteractionRecord(
                time=utcnow(),
                request_id=meta.request_id,
                route=meta.route,
                outcome="completed",
                http_status=200,
                app_id=ctx.app_id,
                app_name=ctx.app_name,
                user=ctx.user,
                model=hit.model,
                workflow=ctx.workflow,
                ttft_ms=elapsed_ms,
                duration_ms=elapsed_ms,
                origin=meta.origin,
                prompt_text=prompt_text(inp.messages) if keep_text else None,
                answer_text=hit.text if keep_text else None,
                request_metadata=inp.metadata,
                metric_model=plan.metric_model,
                cached=True,
            )
        )
