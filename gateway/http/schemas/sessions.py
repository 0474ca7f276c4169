"""POST /sessions."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictInt


class SessionRequest(BaseModel):
    """``POST /sessions``: a session for one of the app's signed-in users."""

    model_config = ConfigDict(extra="forbid")

    user: str = Field(description="The app's own pseudonymous id of the user (1-128 printable).")
    ttl_s: StrictInt = Field(default=900, description="At most the app's session_max_ttl_s.")
    origin: str | None = Field(default=None, description="Bind the session to this app origin.")


class SessionResponse(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str
    expires_at: str = Field(description="ISO-8601, UTC.")
    user: str
