"""What runs below the ASGI app, in the server's connection protocol (used by `orchestra serve`).

Kept apart from ``gateway.http`` (FastAPI) so that the CLI may hand it to uvicorn.
"""
