"""`orchestra quotas set|show`."""

from __future__ import annotations

from typing import Annotated

import typer

from cli import output
from cli.context import CliContext
from gateway.services.views import QuotaLimits

app = typer.Typer(help="Set and show per-app and per-user limits.", no_args_is_help=True)
AppName = Annotated[str, typer.Argument(metavar="APP")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def _print(app_name: str, limits: QuotaLimits, as_json: bool) -> None:
    if as_json:
        output.print_json({"app": app_name, "limits": limits.to_json()})
    else:
        output.print_fields(
            f"Quotas of {app_name}",
            {k: ("unlimited" if v is None else v) for k, v in limits.to_json().items()},
        )


@app.command("set")
def set_(
    ctx: typer.Context,
    app_name: AppName,
    rpm: Annotated[int | None, typer.Option("--rpm", help="Requests per minute.")] = None,
    tpm: Annotated[int | None, typer.Option("--tpm", help="Tokens per minute.")] = None,
    tokens_per_day: Annotated[
        int | None, typer.Option("--tokens-per-day", help="Tokens per UTC day.")
    ] = None,
    max_concurrent: Annotated[
        int | None, typer.Option("--max-concurrent", help="Requests in flight at once.")
    ] = None,
    budget_usd_month: Annotated[
        float | None, typer.Option("--budget-usd-month", help="Cost budget per calendar month.")
    ] = None,
    soft_cap: Annotated[
        bool | None,
        typer.Option(
            "--soft-cap/--hard-cap",
            help="Soft: a streaming answer may finish past the remaining tokens or budget. "
            "Hard (the default): it is stopped with a quota_exceeded error event.",
        ),
    ] = None,
    user_rpm: Annotated[
        int | None, typer.Option("--user-rpm", help="Requests per minute of each user.")
    ] = None,
    user_tpm: Annotated[
        int | None, typer.Option("--user-tpm", help="Tokens per minute of each user.")
    ] = None,
    user_tokens_per_day: Annotated[
        int | None, typer.Option("--user-tokens-per-day", help="Tokens per UTC day of each user.")
    ] = None,
    user_max_concurrent: Annotated[
        int | None,
        typer.Option("--user-max-concurrent", help="Requests in flight at once, per user."),
    ] = None,
    user_budget_usd_month: Annotated[
        float | None,
        typer.Option("--user-budget-usd-month", help="Cost budget per calendar month, per user."),
    ] = None,
    as_json: Json = False,
) -> None:
    """Set APP's limits (0 removes a limit; options not given keep their value).

    The --user-* limits apply to each end user of the app (session and sign-in tokens) on top
    of the app's own: one user at their limit never blocks another.
    """
    from gateway.services import quotas as quota_service

    changes = QuotaLimits(
        rpm=rpm,
        tpm=tpm,
        tokens_per_day=tokens_per_day,
        max_concurrent=max_concurrent,
        budget_usd_month=budget_usd_month,
        soft_cap=soft_cap,
        user_rpm=user_rpm,
        user_tpm=user_tpm,
        user_tokens_per_day=user_tokens_per_day,
        user_max_concurrent=user_max_concurrent,
        user_budget_usd_month=user_budget_usd_month,
    )
    limits = CliContext.of(ctx).run(
        lambda db: quota_service.set_quota(db, app_name=app_name, changes=changes)
    )
    _print(app_name, limits, as_json)


@app.command("show")
def show(ctx: typer.Context, app_name: AppName, as_json: Json = False) -> None:
    """Show APP's limits."""
    from gateway.services import quotas as quota_service

    limits = CliContext.of(ctx).run(lambda db: quota_service.get_limits(db, app_name=app_name))
    _print(app_name, limits, as_json)
