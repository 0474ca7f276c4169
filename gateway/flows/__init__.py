"""LangGraph workflows: conversation memory and multi-step flows, streamed token by token."""
