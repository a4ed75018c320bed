"""Tables that never cut what a person copies: ids and names stay whole at any terminal width (80 columns too).

Why not rich's defaults: a rich table narrower than its content shortens cells with `…`, so at 80 columns `jobs list`
showed `cycle…` for both `cycle_dispatch` and `cycle_report`, and ids in `seed-sample` lost their ends. Here a key
column (an id, a name) never wraps or shortens; the other columns wrap. When even the key columns do not fit, the
rows are shown one block each (`header: value` lines) instead of a table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

FOLDED_MIN = 8
"""The narrowest a wrapped (non-key) column is allowed to become before rows are shown as blocks instead."""


@dataclass(frozen=True)
class Col:
    header: str
    key: bool = False
    """An id or a name: shown whole on one line, whatever the width."""
    justify: Literal["left", "right"] = "left"


def styled(markup: str) -> Text:
    """A cell with rich markup (`[green]ok[/]`); plain strings are shown as they are, brackets included."""
    return Text.from_markup(markup)


def table(columns: Sequence[Col], rows: Sequence[Sequence[str | Text]], *, title: str | None = None) -> Table:
    built = Table(title=title)
    for col in columns:
        if col.key:
            built.add_column(col.header, no_wrap=True, overflow="ignore", justify=col.justify)
        else:
            built.add_column(col.header, overflow="fold", justify=col.justify)
    for row in rows:
        built.add_row(*(_text(value) for value in row))
    return built


def fits(console: Console, columns: Sequence[Col], rows: Sequence[Sequence[str | Text]]) -> bool:
    """Whether the table fits the console with every key column whole and every other column at least FOLDED_MIN
    wide (rich folds those to any width, a URL too; it would shorten the key columns next)."""
    widths = []
    for index, col in enumerate(columns):
        cells = [_text(col.header), *(_text(row[index]) for row in rows)]
        widest = max(cell_len(line) for cell in cells for line in cell.plain.splitlines() or [""])
        widths.append(widest if col.key else min(widest, FOLDED_MIN))
    return sum(widths) + 3 * len(columns) + 1 <= console.width  # one space each side, a border between and around


def show(
    console: Console, columns: Sequence[Col], rows: Sequence[Sequence[str | Text]], *, title: str | None = None
) -> None:
    """Print the rows as a table when it fits the console without cutting a key column, else one block per row."""
    if fits(console, columns, rows):
        console.print(table(columns, rows, title=title))
        return
    if title:
        console.print(Text(title, style="italic"))
    for row in rows:
        (_, first), *rest = zip(columns, row, strict=True)
        head = _text(first)
        head.stylize("bold")
        console.print(head, soft_wrap=True)
        for col, value in rest:
            line = Text(f"  {col.header}: ")
            line.append_text(_text(value))
            console.print(line, soft_wrap=col.key, overflow="fold")


def _text(value: str | Text) -> Text:
    return value.copy() if isinstance(value, Text) else Text(value)
