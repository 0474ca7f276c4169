"""`orchestra logs tail|prune`: interaction records from the shared database (any replica)."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from cli import output
from cli.context import CliContext
from cli.errors import fail
from gateway.core.errors import GatewayError, InvalidRequest

if TYPE_CHECKING:
    from gateway.services.database import Database

app = typer.Typer(help="Read and prune interaction records.", no_args_is_help=True)

_OUTCOME_STYLE = {"completed": "green", "client_disconnected": "yellow", "rejected": "magenta"}
_COMMENT_SHOWN = 60


def _feedback(record: dict[str, Any]) -> str:
    """The rating: ``rated up``/``rated down`` and the start of the comment (user text:
    quoted, on one line, never read as markup)."""
    rating = record.get("feedback")
    if not isinstance(rating, dict):
        return ""
    up = rating.get("score") == 1
    text = "[green]rated up[/]" if up else "[red]rated down[/]"
    comment = rating.get("comment")
    if isinstance(comment, str) and comment:
        line = " ".join(comment.split())
        if len(line) > _COMMENT_SHOWN:
            line = line[: _COMMENT_SHOWN - 1] + "…"
        text += f' "{escape(line)}"'
    return text


def format_line(record: dict[str, Any]) -> str:
    """One compact, colored line per request."""
    when = datetime.fromisoformat(str(record["time"]).replace("Z", "+00:00"))
    outcome = str(record["outcome"])
    style = _OUTCOME_STYLE.get(outcome, "red")
    ttft = record.get("ttft_ms")
    parts = [
        f"[dim]{when:%H:%M:%S.%f}"[:-3] + "[/]",
        f"[bold]{record.get('app') or '-'}[/]",
        # A user id is the app's own text: shown, never read as markup.
        f"user {escape(str(record['user']))}" if record.get("user") else "",
        f"[{style}]{outcome}[/]",
        str(record["http_status"]),
        f"{record['prompt_tokens']}+{record['completion_tokens']} tok",
        f"ttft {ttft:.0f}ms" if isinstance(ttft, int | float) else "ttft -",
        f"{float(record['duration_ms']):.0f}ms",
        str(record.get("route")),
        f"[red]{record['error_code']}[/]" if record.get("error_code") else "",
        _feedback(record),
        f"[dim]{record['request_id']}[/]",
    ]
    return " ".join(part for part in parts if part)


def _emit(record: dict[str, Any], as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(record) + "\n")
        sys.stdout.flush()
    else:
        output.print_markup(format_line(record))


@app.command("tail")
def tail(
    ctx: typer.Context,
    app_name: Annotated[str | None, typer.Option("--app", help="Only this app.")] = None,
    outcome: Annotated[
        str | None, typer.Option("--outcome", help="e.g. completed, rejected.")
    ] = None,
    since: Annotated[str | None, typer.Option("--since", help="Only newer than, e.g. 10m.")] = None,
    user: Annotated[str | None, typer.Option("--user", help="Only this end user.")] = None,
    lines: Annotated[int, typer.Option("-n", "--lines", min=0, max=1000)] = 50,
    follow: Annotated[
        bool, typer.Option("-f", "--follow", help="Keep printing new records.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    url: Annotated[
        str | None, typer.Option("--url", help="Read from a remote gateway's /logs instead.")
    ] = None,
    token: Annotated[
        str | None,
        typer.Option("--token", envvar="ORCHESTRA_ADMIN_TOKEN", help="Admin token for --url."),
    ] = None,
) -> None:
    """The latest interaction records, oldest first; with --follow, new ones as they happen."""
    from gateway.core.durations import parse_duration
    from gateway.services import logs as log_service

    if url is not None:
        params = {"app": app_name, "outcome": outcome, "since": since, "user": user}
        _remote(url, token, {k: v for k, v in params.items() if v}, lines, follow, as_json)
        return

    async def run(db: Database) -> None:
        age = None if since is None else parse_duration(since)
        where = await log_service.log_filter(
            db, app_name=app_name, outcome=outcome, user=user, since=age
        )
        if not follow:
            page = await log_service.recent_logs(db, where, limit=max(lines, 1))
            for record in reversed(page.records[:lines]):
                _emit(record, as_json)
            return
        async for record in log_service.follow_logs(db, where, backlog=lines):
            _emit(record, as_json)

    try:
        CliContext.of(ctx).run(run)
    except KeyboardInterrupt:
        raise typer.Exit(code=0) from None


def _remote(
    url: str, token: str | None, params: dict[str, str], lines: int, follow: bool, as_json: bool
) -> None:
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    endpoint = f"{url.rstrip('/')}/logs"
    try:
        if not follow:
            response = httpx.get(
                endpoint, params={**params, "limit": str(max(lines, 1))}, headers=headers
            )
            _raise_for(response)
            for record in reversed(response.json()["records"][:lines]):
                _emit(record, as_json)
            return
        query = {**params, "follow": "true", "limit": str(lines)}
        timeout = httpx.Timeout(10.0, read=None)
        with httpx.stream("GET", endpoint, params=query, headers=headers, timeout=timeout) as r:
            if r.status_code != 200:
                r.read()
                _raise_for(r)
            for line in r.iter_lines():
                if line.startswith("data:"):
                    _emit(json.loads(line[5:]), as_json)
    except KeyboardInterrupt:
        raise typer.Exit(code=0) from None
    except httpx.HTTPError as exc:
        fail(GatewayError(f"Cannot read {endpoint}: {type(exc).__name__}."))


def _raise_for(response: Any) -> None:
    if response.status_code != 200:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = f"HTTP {response.status_code}"
        fail(GatewayError(f"The gateway refused: {message}"))


@app.command("prune")
def prune(
    ctx: typer.Context,
    older_than: Annotated[str, typer.Option("--older-than", help="e.g. 30d.")],
) -> None:
    """Delete interaction records older than the given age."""
    from gateway.core.durations import parse_duration
    from gateway.services import logs as log_service

    try:
        age = parse_duration(older_than)
    except InvalidRequest as error:
        fail(error)
    deleted = CliContext.of(ctx).run(lambda db: log_service.prune_logs(db, older_than=age))
    output.print_success(f"{deleted} record(s) older than {older_than} deleted.")
