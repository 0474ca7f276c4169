"""GET /status."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

CheckState = Literal["ok", "error", "disabled"]


class StatusApp(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    model: str
    allowed_models: list[str]
    quota: dict[str, Any]


class StatusUser(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    credential: str
    quota: dict[str, Any] = Field(
        default_factory=dict, description="The per-user limits and what is left of them."
    )


class StatusBody(BaseModel):
    """GET /status: 200 when every enabled dependency answers, 503 (``degraded``) otherwise."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["ok", "degraded"]
    version: str
    uptime_s: float
    checks: dict[str, CheckState]
    circuits: dict[str, Literal["closed", "open", "half_open"]]
    app: StatusApp | None = Field(default=None, description="Only for a valid app token.")
    user: StatusUser | None = Field(
        default=None, description="Only for an end user's token (a session, a sign-in)."
    )
