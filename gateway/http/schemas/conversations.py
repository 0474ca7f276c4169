"""GET /conversations/{id}."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ConversationMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: str
    content: str


class Conversation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    conversation_id: str
    messages: list[ConversationMessage]
