"""A JSON response rendered with orjson (Starlette's renders with json.dumps).

For the answers on the hot path: an OpenAI completion body is rendered several times faster.
Same output shape as Starlette's JSONResponse: compact, UTF-8, no ASCII escaping.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response


class FastJSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)
