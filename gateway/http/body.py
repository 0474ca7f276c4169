"""Reading a JSON body within limits, with errors in our own shape (never FastAPI's 422)."""

from __future__ import annotations

import json
import math
import re
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from gateway.core.errors import InvalidRequest, RequestTooLarge, UnprocessableRequest

ModelT = TypeVar("ModelT", bound=BaseModel)

# A \uD800-\uDFFF escape: a surrogate, legal only as half of a pair.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(f"The request body is larger than {limit} bytes.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge(f"The request body is larger than {limit} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400: no JSON encoder writes it back (records, /logs)
        raise ValueError(text)
    return value


def _not_json(constant: str) -> Any:
    raise ValueError(constant)  # NaN, Infinity: Python's extension, not JSON


# Strict JSON: numbers that no encoder can write back (records, /logs) are refused.
_DECODER = json.JSONDecoder(parse_float=_finite, parse_constant=_not_json)


def _has_lone_surrogate(text: str, data: object) -> bool:
    """Whether a string holds half a surrogate pair, which UTF-8 (upstream, database) cannot."""
    if _SURROGATE_ESCAPE.search(text) is None:  # the fast path: no such escape at all
        return False
    try:
        json.dumps(data, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return True
    return False


def parse_model(raw: bytes, model: type[ModelT]) -> ModelT:
    try:
        # Strict UTF-8 (RFC 8259), which also refuses encoded surrogates; a BOM is ignored.
        text = raw.decode().removeprefix("\ufeff")
        data = _DECODER.decode(text)
    except (ValueError, RecursionError):  # RecursionError: absurd nesting
        raise InvalidRequest("The request body is not valid JSON.") from None
    if _has_lone_surrogate(text, data):
        raise InvalidRequest("The request body holds a lone UTF-16 surrogate (\\uD800-\\uDFFF).")
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}"
            for err in exc.errors(include_url=False, include_input=False)
        )
        raise UnprocessableRequest(f"Invalid request: {problems}.") from None
