"""`orchestra ask`: stream an answer from a running gateway into the terminal."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from cli import output
from cli.errors import fail
from gateway.core.errors import InvalidRequest


def ask(
    prompt: Annotated[str, typer.Argument(help="The question.")],
    url: Annotated[str, typer.Option("--url", help="Gateway URL.")] = "http://127.0.0.1:8000",
    token: Annotated[
        str, typer.Option("--token", envvar="ORCHESTRA_TOKEN", help="Client token (orc_...).")
    ] = "",
    model: Annotated[str | None, typer.Option("--model")] = None,
) -> None:
    """Send PROMPT to /ask and print the answer as it streams; exit 1 on an error event."""
    import httpx

    token = _checked_token(token)
    body: dict[str, object] = {"prompt": prompt}
    if model:
        body["model"] = model
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
    try:
        with httpx.stream(
            "POST",
            f"{url.rstrip('/')}/ask",
            json=body,
            headers=headers,
            timeout=httpx.Timeout(10.0, read=300.0),
        ) as response:
            if response.status_code != 200:
                response.read()
                error = _error_of(response.text)
                output.print_error(f"{error[0]}: {error[1]} (HTTP {response.status_code})")
                raise typer.Exit(code=1)
            _print_stream(response.iter_lines())
    except httpx.HTTPError as exc:
        output.print_error(f"Cannot reach the gateway at {url}: {type(exc).__name__}")
        raise typer.Exit(code=1) from None


def _checked_token(token: str) -> str:
    """The token as a header can carry it; refused here rather than as a transport error."""
    token = token.strip()
    if not token:
        fail(InvalidRequest("no token: pass --token or set ORCHESTRA_TOKEN"))
    if not token.isascii() or not token.isprintable() or " " in token:
        # Never echoed: it is a secret, and a mangled one is still close to the real one.
        fail(InvalidRequest("the token holds spaces or control characters: copy it again"))
    return token


def _error_of(text: str) -> tuple[str, str]:
    try:
        error = json.loads(text)["error"]
        return str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        return "error", text[:200]


def _print_stream(lines: object) -> None:
    event = ""
    for line in lines:  # type: ignore[attr-defined]
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data = json.loads(line[5:])
            if event == "delta":
                sys.stdout.write(data["text"])
                sys.stdout.flush()
            elif event == "done":
                sys.stdout.write("\n")
                usage = data.get("usage") or {}
                output.print_info(
                    f"[{data.get('model')}, {usage.get('total_tokens')} tokens, "
                    f"{data.get('request_id')}]"
                )
            elif event == "error":
                sys.stdout.write("\n")
                output.print_error(f"{data.get('code')}: {data.get('message')}")
                raise typer.Exit(code=1)
