"""`orchestra tokens issue|list|revoke`."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer

from cli import output
from cli.context import CliContext
from cli.errors import fail
from gateway.core.clock import utcnow
from gateway.core.durations import parse_duration
from gateway.core.errors import InvalidRequest

app = typer.Typer(help="Issue, list and revoke client tokens.", no_args_is_help=True)
Json = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


@app.command("issue")
def issue(
    ctx: typer.Context,
    app_name: Annotated[str, typer.Argument(metavar="APP", help="The app the token belongs to.")],
    label: Annotated[str | None, typer.Option("--label", help="What the token is for.")] = None,
    expires_in: Annotated[
        str | None, typer.Option("--expires-in", help="Lifetime such as 30d, 12h, 15m.")
    ] = None,
    as_json: Json = False,
) -> None:
    """Issue a new client token for APP (the secret is shown once)."""
    from gateway.services import tokens as token_service

    lifetime: timedelta | None = None
    if expires_in is not None:
        try:
            lifetime = parse_duration(expires_in)
        except InvalidRequest as error:
            fail(error)
    issued = CliContext.of(ctx).run(
        lambda db: token_service.issue_token(
            db, app_name=app_name, label=label, expires_in=lifetime
        )
    )
    if as_json:
        output.print_json(issued.to_json())
        return
    output.show_secret_once(f"Client token for {app_name} ({issued.info.id})", issued.secret)


@app.command("list")
def list_(
    ctx: typer.Context,
    app_name: Annotated[str, typer.Argument(metavar="APP")],
    as_json: Json = False,
) -> None:
    """List APP's tokens: ids, labels, dates and state, never the secret."""
    from gateway.services import tokens as token_service

    tokens = CliContext.of(ctx).run(lambda db: token_service.list_tokens(db, app_name=app_name))
    now = utcnow()
    if as_json:
        output.print_json([token.to_json(now) for token in tokens])
        return
    output.print_table(
        f"Tokens of {app_name}",
        ["id", "hint", "label", "state", "created", "expires"],
        (
            (t.id, t.hint, t.label or "-", t.state(now), t.created_at, t.expires_at or "never")
            for t in tokens
        ),
        whole=("id", "hint", "created", "expires"),
        droppable=("created",),
    )


@app.command("revoke")
def revoke(
    ctx: typer.Context,
    token_id: Annotated[str, typer.Argument(metavar="TOKEN_ID", help="The id (tok_...).")],
    as_json: Json = False,
) -> None:
    """Revoke a token: every gateway refuses it within 2 s (at once with Redis)."""
    from gateway.services import tokens as token_service

    info = CliContext.of(ctx).run_announced(
        lambda db, announcer: token_service.revoke_token(db, token_id, announcer=announcer)
    )
    if as_json:
        output.print_json(info.to_json(utcnow()))
    else:
        output.print_success(f"Token {token_id} revoked.")
