"""What /ask and /v1/chat/completions share: input limits, and one lifecycle per call.

``handle_call`` owns the part every answering route repeats: a request refused before an
``Answer`` exists is recorded as a refusal; once there is one, every exit settles it (a client
that left before the response started is recorded as ``client_disconnected`` and gets 499).
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio
from starlette.responses import Response
from starlette.types import Receive

from gateway.core.errors import GatewayError, RequestTooLarge
from gateway.http.resources import Resources
from gateway.http.streaming import ClientDisconnected, ClientWatch
from gateway.services.ask import Answer, CallMeta, outcome_of
from gateway.services.interactions import rejection_record
from gateway.services.tokens import AppContext
from gateway.settings import Settings


def check_limits(settings: Settings, messages: list[dict[str, object]], metadata: object) -> None:
    if len(messages) > settings.max_messages:
        raise RequestTooLarge(
            f"Too many messages ({len(messages)}); the limit is {settings.max_messages}."
        )
    chars = sum(len(str(m.get("content") or "")) for m in messages)
    if chars > settings.max_prompt_chars:
        raise RequestTooLarge(
            f"The prompt is too long ({chars} characters); the limit is "
            f"{settings.max_prompt_chars}."
        )
    if metadata is not None and len(json.dumps(metadata)) > settings.max_metadata_bytes:
        raise RequestTooLarge(f"'metadata' is larger than {settings.max_metadata_bytes} bytes.")


def record_refusal(
    resources: Resources, meta: CallMeta, ctx: AppContext | None, error: GatewayError
) -> None:
    resources.recorder.record(
        rejection_record(
            request_id=meta.request_id,
            route=meta.route,
            origin=meta.origin,
            duration_ms=(time.perf_counter() - meta.started) * 1000,
            error_code=error.code,
            http_status=error.http_status,
            outcome=outcome_of(error),
            app_id=None if ctx is None else ctx.app_id,
            app_name=None if ctx is None else ctx.app_name,
            user=None if ctx is None else ctx.user,
        )
    )


@dataclass
class Call:
    """What a route learned so far: who calls, the answer once it exists, the client watch."""

    ctx: AppContext | None = None
    answer: Answer | None = None
    watch: ClientWatch | None = None

    def start_watching(self, receive: Receive) -> ClientWatch:
        """Watch for the client leaving (once the body is read); closed when the call ends."""
        self.watch = ClientWatch(receive)
        return self.watch

    def hand_over(self) -> ClientWatch:
        """The answer now belongs to its producer, the watch to the streamed response."""
        watch, self.watch, self.answer = self.watch, None, None
        assert watch is not None
        return watch


async def handle_call(
    resources: Resources, meta: CallMeta, work: Callable[[Call], Awaitable[Response]]
) -> Response:
    call = Call()
    try:
        return await work(call)
    except ClientDisconnected:
        assert call.answer is not None
        with anyio.CancelScope(shield=True):
            await call.answer.settle()  # recorded as client_disconnected
        return Response(status_code=499)
    except GatewayError as error:
        if call.answer is None:
            record_refusal(resources, meta, call.ctx, error)
        else:
            with anyio.CancelScope(shield=True):
                await call.answer.settle()
        raise
    except Exception:
        # A bug, not a domain error: still close the upstream, release the quota and record.
        if call.answer is not None:
            call.answer.fail(GatewayError("Internal error."))
            with anyio.CancelScope(shield=True):
                await call.answer.settle()
        raise
    finally:
        if call.watch is not None:
            call.watch.close()
