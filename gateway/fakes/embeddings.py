"""``POST /v1/embeddings``: one deterministic unit vector per input, float or base64.

The vector of an input is a function of its text (or token ids) alone, seeded by a BLAKE2b hash,
normalised to length 1 like OpenAI's; ``dimensions`` shortens it (the ``text-embedding-3``
models' option). ``encoding_format: "base64"`` sends the little-endian float32 bytes in
base64, as OpenAI does (the official SDK asks for it by default and decodes it).
``prompt_tokens`` counts the input like the chat fake (token ids count one each). Directives in
the inputs: ``[fail:N]`` and ``[hang]``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import math
import random
import struct
from typing import TYPE_CHECKING, Any

from gateway.fakes import errors
from gateway.fakes.asgi import (
    Receive,
    Scope,
    Send,
    send_bytes,
    send_error,
    watch_disconnect,
)
from gateway.fakes.errors import ApiError
from gateway.fakes.prompt import count_text_tokens, parse_directives

if TYPE_CHECKING:
    from gateway.fakes.openai_server import FakeOpenAIApp

#: The embedding models the fake knows, and their full dimensions.
DIMENSIONS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072}
MAX_INPUTS = 2048


def _inputs(value: Any) -> list[str | list[int]] | None:
    """Each input (a text or a list of token ids), or None when ``input`` is not valid."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not value or len(value) > MAX_INPUTS:
        return None
    if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return [value]
    if all(isinstance(v, str) for v in value):
        return list(value)
    if all(isinstance(v, list) and v and all(isinstance(t, int) for t in v) for v in value):
        return list(value)
    return None


def vector(item: str | list[int], dimensions: int) -> list[float]:
    seed = hashlib.blake2b(json.dumps(item).encode(), digest_size=16).digest()
    rng = random.Random(int.from_bytes(seed, "big"))
    values = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    # Rounded through float32, as OpenAI's vectors are: float and base64 say the same numbers.
    packed = struct.pack(f"<{dimensions}f", *(v / norm for v in values))
    return list(struct.unpack(f"<{dimensions}f", packed))


def _validate(valid: bool, body: Any) -> ApiError | None:
    if not valid or not isinstance(body, dict):
        return errors.invalid_json()
    for name in ("model", "input"):
        if body.get(name) is None:
            return errors.missing_parameter(name)
    if _inputs(body["input"]) is None:
        message = (
            "Invalid 'input': expected a string, an array of strings, an array of token ids or"
            f" an array of token id arrays (at most {MAX_INPUTS} inputs)."
        )
        return errors.invalid_parameter("input", message, "invalid_type")
    if body.get("encoding_format", "float") not in ("float", "base64"):
        message = "Invalid 'encoding_format': expected 'float' or 'base64'."
        return errors.invalid_parameter("encoding_format", message, "invalid_value")
    full = DIMENSIONS.get(body["model"]) if isinstance(body["model"], str) else None
    if full is None:
        return errors.model_not_found(str(body["model"]))
    dimensions = body.get("dimensions", full)
    if (
        not isinstance(dimensions, int)
        or isinstance(dimensions, bool)
        or not 1 <= dimensions <= full
    ):
        message = f"Invalid 'dimensions': expected an integer from 1 to {full}."
        return errors.invalid_parameter("dimensions", message, "invalid_value")
    return None


def _tokens(item: str | list[int]) -> int:
    return count_text_tokens(item) if isinstance(item, str) else len(item)


def payload(body: dict[str, Any]) -> dict[str, Any]:
    inputs = _inputs(body["input"]) or []
    model: str = body["model"]
    dimensions: int = body.get("dimensions") or DIMENSIONS[model]
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    for index, item in enumerate(inputs):
        values = vector(item, dimensions)
        embedding: list[float] | str = (
            base64.b64encode(struct.pack(f"<{dimensions}f", *values)).decode()
            if as_base64
            else values
        )
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    tokens = sum(_tokens(item) for item in inputs)
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


async def handle_embeddings(app: FakeOpenAIApp, scope: Scope, receive: Receive, send: Send) -> None:
    begun = await app.begin(scope, receive, send, id_prefix="emb-", validate=_validate)
    if begun is None:
        return
    record, body, key = begun
    texts = [item for item in _inputs(body["input"]) or [] if isinstance(item, str)]
    directives = parse_directives("\n".join(texts))
    error = app.injected_error(directives.fail_status, key=key, model=body["model"])
    if error is not None:
        await send_error(send, error, record)
    elif directives.hang:
        await watch_disconnect(receive, record, asyncio.Event().wait())
    else:
        record.status_code = 200
        await send_bytes(send, 200, json.dumps(payload(body)).encode())
        record.chunks_sent = len(texts)
        record.finish("completed")
