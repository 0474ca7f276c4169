"""OpenAPI pieces built from the models, for the routes that read their own request (our error
shape, our limits) and answer with a Response: FastAPI cannot infer their bodies, so they pass
these through ``openapi_extra=`` and ``responses=``. No schema is written by hand here: each
comes from a model's ``model_json_schema`` (or a TypeAdapter's, for a union of event models).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, TypeAdapter


def inline_schema(model: Any) -> dict[str, Any]:
    """The JSON schema of a model (or a union of them) with its ``$defs`` inlined (for
    ``openapi_extra`` and response content, where FastAPI registers no components)."""
    schema = TypeAdapter(model).json_schema()
    defs: dict[str, Any] = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(value) for value in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


def json_request_body(model: type[BaseModel], **examples: dict[str, Any]) -> dict[str, Any]:
    """``openapi_extra=`` for a JSON body the route parses itself (see gateway/http/body.py)."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": inline_schema(model),
                    "examples": {name: {"value": value} for name, value in examples.items()},
                }
            },
        }
    }


def sse_content(events: Any, *, description: str) -> dict[str, Any]:
    """A ``text/event-stream`` media type; ``events`` models ONE event as ``{event, data}``
    (``data`` a ``Json[...]`` field: a string that holds a JSON document).

    Before OpenAPI 3.2 (``itemSchema``) a stream's ``schema`` describes one event, which is
    how Schemathesis validates every event of the stream.
    """
    return {"description": description, "schema": inline_schema(events)}
