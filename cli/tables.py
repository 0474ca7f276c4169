"""Tables that fit the terminal without cutting what an operator copies (ids, models, URLs).

Rich shrinks every column of a table wider than the terminal and ends the cut cells with "…":
`completi…`, `gpt-4o-mi…`, `http://1…` at 80 columns. Here a column wraps at its spaces only
(headers such as "completion tokens", lists such as origins), never inside a word; a *whole*
column (a date, say) does not wrap at all. When even that does not fit, the *droppable* columns
go, in the order given; when the rest is still too wide, each row is printed as its own block
of "header  value" lines.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from rich.cells import cell_len
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

# Each column has one cell of padding either side and one rule on its right; the table one more.
_PER_COLUMN = 3
_EDGE = 1


@dataclass(frozen=True)
class Layout:
    """The columns shown (indexes into the headers) and their widths; None: leave it to Rich."""

    shown: list[int]
    widths: list[int] | None


def _longest_word(text: str) -> int:
    return max((cell_len(word) for word in text.split()), default=0)


def layout(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    width: int,
    *,
    whole: Collection[str] = (),
    droppable: Sequence[str] = (),
) -> Layout:
    """Fit the table in ``width`` cells: wrap first, then drop, then let Rich fold."""
    cells = [[header, *(row[i] for row in rows)] for i, header in enumerate(headers)]
    natural = [max(cell_len(line) for c in col for line in c.splitlines() or [""]) for col in cells]
    # A column wraps at spaces only, so it never gets narrower than its longest word (a whole
    # column: its longest value); headers always may wrap.
    least = [
        max(
            [
                _longest_word(header),
                *((cell_len(c) if header in whole else _longest_word(c)) for c in cells[i][1:]),
            ]
        )
        for i, header in enumerate(headers)
    ]
    shown = list(range(len(headers)))
    for dropped in (None, *droppable):
        if dropped is not None and dropped in headers:
            shown.remove(headers.index(dropped))
        budget = width - _PER_COLUMN * len(shown) - _EDGE
        if sum(least[i] for i in shown) <= budget:
            return Layout(
                shown, _shrink([natural[i] for i in shown], [least[i] for i in shown], budget)
            )
    return Layout(shown, None)


def _shrink(widths: list[int], least: list[int], budget: int) -> list[int]:
    """Narrow the widest column that may still narrow, one cell at a time, until all fit."""
    widths = list(widths)
    while sum(widths) > budget:
        narrowable = [i for i, w in enumerate(widths) if w > least[i]]
        widest = max(narrowable, key=lambda i: widths[i])  # sum(least) <= budget: never empty
        widths[widest] -= 1
    return widths


def build(
    title: str,
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    width: int,
    *,
    whole: Collection[str] = (),
    droppable: Sequence[str] = (),
) -> RenderableType:
    """A table when its columns fit in ``width``, else one block of "header value" per row."""
    fit = layout(headers, rows, width, whole=whole, droppable=droppable)
    if fit.widths is None:
        return _records(title, headers, rows)
    table = Table(title=title, show_lines=False)
    for n, i in enumerate(fit.shown):
        table.add_column(
            headers[i],
            width=fit.widths[n],
            overflow="fold",  # never "…": a cut id or URL is worse than a folded one
        )
    for row in rows:
        table.add_row(*(Text(row[i]) for i in fit.shown))  # values are data, never markup
    return table


def _records(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> Group:
    """Every row as its own block, one "header  value" line each: nothing is cut or dropped."""
    pad = max((cell_len(header) for header in headers), default=0) + 2
    blocks: list[RenderableType] = [Text(title, style="table.title")]
    for row in rows:
        block = Text()
        for header, value in zip(headers, row, strict=True):
            block.append("\n" if block else "").append(header.ljust(pad), style="bold")
            block.append(value)
        blocks += [Text(""), block]
    return Group(*blocks)
