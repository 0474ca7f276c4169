"""`orchestra usage`: requests, tokens, cost and rejections per app."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer

from cli import output
from cli.context import CliContext


def usage(
    ctx: typer.Context,
    app_name: Annotated[str | None, typer.Option("--app", help="Only this app.")] = None,
    period: Annotated[str, typer.Option("--period", help="day (UTC) or month (UTC).")] = "day",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Usage per app since the start of the current UTC day or month."""
    from gateway.services.usage import usage_report

    since, rows = CliContext.of(ctx).run(
        lambda db: usage_report(db, period=period, app_name=app_name)
    )
    if as_json:
        output.print_json(
            {
                "period": period,
                "since": since.isoformat().replace("+00:00", "Z"),
                "apps": [asdict(row) for row in rows],
            }
        )
        return
    output.print_table(
        f"Usage since {since:%Y-%m-%d %H:%M} UTC ({period})",
        [
            "app",
            "requests",
            "prompt tokens",
            "completion tokens",
            "cost (USD)",
            "rejected",
            "quota 429s",
        ],
        (
            (
                r.app_name,
                r.requests,
                r.prompt_tokens,
                r.completion_tokens,
                f"{r.cost_usd:.6f}",
                r.rejections,
                r.quota_rejections,
            )
            for r in rows
        ),
        whole=("app",),
        droppable=("quota 429s",),  # a part of "rejected"
    )
