"""`orchestra sessions revoke|rotate-secret`: end users' session tokens of an app."""

from __future__ import annotations

from typing import Annotated

import typer

from cli import output
from cli.context import CliContext
from cli.errors import fail
from gateway.core.errors import InvalidRequest

app = typer.Typer(
    help="End the sessions of an app's users; rotate the session secret.", no_args_is_help=True
)
AppName = Annotated[str, typer.Argument(metavar="APP", help="The app the sessions belong to.")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


@app.command("revoke")
def revoke(
    ctx: typer.Context,
    app_name: AppName,
    user: Annotated[
        str | None, typer.Option("--user", help="End this user's sessions.", show_default=False)
    ] = None,
    every: Annotated[bool, typer.Option("--all", help="End every session of the app.")] = False,
    as_json: Json = False,
) -> None:
    """End sessions issued until now: every gateway refuses them within 2 s (at once with
    Redis). The app's backend can mint new ones right away (a second later)."""
    from gateway.services import sessions as session_service

    if (user is None) == (not every):
        fail(InvalidRequest("Give exactly one of --user U and --all."))
    report = CliContext.of(ctx).run_announced(
        lambda db, announcer: session_service.revoke_sessions(
            db, app_name=app_name, user=user, announcer=announcer
        )
    )
    when = report.revoked_before.isoformat().replace("+00:00", "Z")
    if as_json:
        output.print_json({"app": report.app_name, "user": report.user, "revoked_before": when})
        return
    whose = "every session" if user is None else "every session of that user"
    output.print_success(f"Revoked {whose} of {report.app_name} issued until {when}.")


@app.command("rotate-secret")
def rotate_secret(
    ctx: typer.Context,
    app_name: AppName,
    revoke: Annotated[
        bool, typer.Option("--revoke", help="Also end every session signed until now.")
    ] = False,
    as_json: Json = False,
) -> None:
    """Sign new sessions with a new secret. Sessions signed with the old one stay valid until
    they expire, unless --revoke."""
    from gateway.services import sessions as session_service

    cli = CliContext.of(ctx)
    keyring = cli.keyring()
    report = cli.run_announced(
        lambda db, announcer: session_service.rotate_secret(
            db, keyring, app_name=app_name, revoke=revoke, announcer=announcer
        )
    )
    if as_json:
        output.print_json(
            {
                "app": report.app_name,
                "kid": report.kid,
                "retired": report.retired,
                "revoked": report.revoked,
            }
        )
        return
    ended = "; every older session is revoked" if revoke else ""
    output.print_success(f"New session secret {report.kid} for {report.app_name}{ended}.")
