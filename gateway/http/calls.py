"""What /ask and /v1/chat/completions share: limits on input, and recording refusals."""

from __future__ import annotations

import json
import time

from gateway.core.errors import GatewayError, RequestTooLarge
from gateway.http.resources import Resources
from gateway.services.ask import CallMeta, outcome_of
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
        )
    )
