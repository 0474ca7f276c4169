"""Outbound calls to OpenAI-compatible APIs. No SDK or httpx type leaks out of this package."""
