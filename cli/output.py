"""Everything the CLI prints. Secrets go through `show_secret_once` and nowhere else."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cli import tables

_out = Console(highlight=False, soft_wrap=True)
_err = Console(stderr=True, highlight=False, soft_wrap=True)


def print_json(data: Any) -> None:
    # Plain print, no Rich markup: scripts parse this.
    _out.file.write(json.dumps(data, indent=2, sort_keys=False) + "\n")
    _out.file.flush()


def print_error(message: str) -> None:
    # Messages quote what the operator typed: escaped, so "[...]" is shown, not read as markup.
    _err.print(f"[bold red]Error:[/] {escape(message)}", markup=True, highlight=False)


def print_info(message: str) -> None:
    _out.print(message, markup=False)


def print_markup(message: str) -> None:
    """Our own Rich markup (callers escape what they did not write)."""
    _out.print(message, markup=True, highlight=False)


def print_success(message: str) -> None:
    _out.print(f"[green]✓[/] {escape(message)}")


def show_secret_once(title: str, secret: str) -> None:
    # The secret sits alone on its line so that it can be copied whole.
    _out.print(f"[bold]{escape(title)}[/] (shown only this once; it cannot be recovered):")
    _out.print(secret, markup=False, highlight=False, soft_wrap=True)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    return str(value)


def print_table(
    title: str,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    whole: Collection[str] = (),
    droppable: Sequence[str] = (),
) -> None:
    """A table as wide as the terminal: ``whole`` columns are never cut (see cli.tables)."""
    cells = [[_cell(value) for value in row] for row in rows]
    _out.print(tables.build(title, columns, cells, _out.width, whole=whole, droppable=droppable))


def print_fields(title: str, fields: dict[str, Any]) -> None:
    table = Table(title=title, show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for key, value in fields.items():
        if isinstance(value, list | tuple):
            value = ", ".join(str(v) for v in value) or "-"
        table.add_row(key, "-" if value is None else str(value))
    _out.print(table)
