"""The W3C ``traceparent`` an upstream request carries: the span of the call that makes it.

A context variable, not a parameter: it is set once where a call starts (when tracing is on)
and read where the upstream request is written, without threading it through every layer in
between (services, workflows, retries). Each request runs in its own task, so its value never
leaks into another request; tasks a call starts (a workflow's run) copy it, as asyncio copies
the current context into every new task.
"""

from __future__ import annotations

from contextvars import ContextVar

#: The ``traceparent`` header of the current call's upstream requests; None: send none.
upstream_traceparent: ContextVar[str | None] = ContextVar("upstream_traceparent", default=None)
