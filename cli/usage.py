"""`orchestra usage`: requests, tokens, cost, rejections and ratings per app.

Ratings (POST /feedback): answers rated up and down, and the share of answers (completed, or
cut by a quota or the client) that were rated at all: "rated up/down" ``3/1 (40%)``; JSON
``rated_up``, ``rated_down``, ``answers`` and ``rated_share`` (null without answers).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli import output
from cli.context import CliContext
from cli.errors import fail

if TYPE_CHECKING:
    from gateway.services.usage import UsageRow


def _row_json(row: UsageRow, by_user: bool) -> dict[str, Any]:
    data = asdict(row)
    if not by_user:
        del data["user"]
    data["rated_share"] = row.rated_share
    return data


def _ratings(row: UsageRow) -> str:
    """Up/down and the share of answers rated: ``3/1 (40%)``; ``-`` without answers."""
    share = row.rated_share
    return "-" if share is None else f"{row.rated_up}/{row.rated_down} ({share:.0%})"


def usage(
    ctx: typer.Context,
    app_name: Annotated[str | None, typer.Option("--app", help="Only this app.")] = None,
    period: Annotated[str, typer.Option("--period", help="day (UTC) or month (UTC).")] = "day",
    by: Annotated[
        str | None, typer.Option("--by", help="'user': one row per end user of each app.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Usage per app (or per end user) since the start of the current UTC day or month."""
    from gateway.core.errors import InvalidRequest
    from gateway.services.usage import usage_report

    if by not in (None, "user"):
        fail(InvalidRequest(f"Unknown --by {by!r}: use 'user'."))
    by_user = by == "user"
    since, rows = CliContext.of(ctx).run(
        lambda db: usage_report(db, period=period, app_name=app_name, by_user=by_user)
    )
    if as_json:
        output.print_json(
            {
                "period": period,
                "since": since.isoformat().replace("+00:00", "Z"),
                "apps": [_row_json(row, by_user) for row in rows],
            }
        )
        return
    output.print_table(
        f"Usage since {since:%Y-%m-%d %H:%M} UTC ({period})",
        [
            "app",
            *(["user"] if by_user else []),
            "requests",
            "prompt tokens",
            "completion tokens",
            "cost (USD)",
            "rejected",
            "quota 429s",
            "rated up/down",
        ],
        (
            (
                r.app_name,
                *([r.user or "(app token)"] if by_user else []),
                r.requests,
                r.prompt_tokens,
                r.completion_tokens,
                f"{r.cost_usd:.6f}",
                r.rejections,
                r.quota_rejections,
                _ratings(r),
            )
            for r in rows
        ),
        whole=("app",),
        # Ratings first (JSON has them), then "quota 429s" (a part of "rejected").
        droppable=("rated up/down", "quota 429s"),
    )
