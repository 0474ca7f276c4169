"""Fitting a table to the terminal: wrap at spaces, then drop columns, then one block per row."""

from __future__ import annotations

import io

from rich.console import Console

from cli import tables

HEADERS = ["name", "id", "notes", "state"]
ROWS = [["alpha", "app_0123456789abcdef", "a few words of notes", "enabled"]]


def render(width: int, **options: object) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None)
    console.print(tables.build("Apps", HEADERS, ROWS, width, **options))  # type: ignore[arg-type]
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert max(len(line) for line in out.splitlines()) <= width, out
    assert "…" not in out
    return str(out)


def test_a_wide_terminal_gets_the_natural_table() -> None:
    fit = tables.layout(HEADERS, ROWS, 200)
    assert fit.shown == [0, 1, 2, 3]
    assert fit.widths == [5, 20, 20, 7]


def test_columns_wrap_at_spaces_but_never_inside_a_word() -> None:
    fit = tables.layout(HEADERS, ROWS, 60)
    assert fit.shown == [0, 1, 2, 3]
    assert fit.widths is not None and sum(fit.widths) + 3 * 4 + 1 <= 60
    assert fit.widths[1] == 20  # the id: one word, kept whole
    out = render(60)
    assert "app_0123456789abcdef" in out and "notes" in out


def test_droppable_columns_go_in_order_before_anything_is_cut() -> None:
    fit = tables.layout(HEADERS, ROWS, 44, droppable=["notes", "state"])
    assert fit.shown == [0, 1, 3]
    out = render(44, droppable=["notes", "state"])
    assert "app_0123456789abcdef" in out and "notes" not in out


def test_a_whole_column_keeps_its_spaces_on_one_line() -> None:
    fit = tables.layout(HEADERS, ROWS, 65, whole=["notes"])
    assert fit.widths is not None and fit.widths[2] == len("a few words of notes")


def test_too_narrow_for_any_table_prints_each_row_as_a_block() -> None:
    out = render(30)
    lines = [line.rstrip() for line in out.splitlines()]
    assert "id     app_0123456789abcdef" in lines
    assert "notes  a few words of notes" in lines
    assert "┃" not in out


def test_values_are_printed_as_they_are_never_as_markup() -> None:
    console = Console(file=io.StringIO(), width=80, color_system=None)
    console.print(tables.build("Tokens", ["label"], [["[bold]x[/bold]"]], 80))
    assert "[bold]x[/bold]" in console.file.getvalue()  # type: ignore[attr-defined]
