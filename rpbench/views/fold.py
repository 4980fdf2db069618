"""Tables that fit a width without breaking a cell: columns that do not fit are folded into another table below,
which repeats the key columns (the mechanism, the setting), instead of being squeezed until their numbers wrap.

How wide a table may be is the caller's (the terminal's width, `--width`, or a fixed width for a pipe); every number
cell is rendered on one line (`no_wrap`), and only columns marked `wrap` (free text such as a status and its
note) may wrap, at word boundaries, when even one of them alone is wider than what is left.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from rich import box
from rich.cells import cell_len
from rich.table import Table
from rich.text import Text

BOX = box.SIMPLE_HEAD  # a rule under the header, spaces between columns: reads the same in a file as on screen
WRAP_MIN = 16  # the narrowest a free-text column is made before its words wrap


@dataclass
class Column:
    """A column of a foldable table: its header, its cells (one per row), how it is justified, whether its words may
    wrap (free text) or it must stay one line per cell (numbers, names)."""

    header: str
    cells: list[Text] = field(default_factory=list)
    justify: str = "left"
    wrap: bool = False

    @property
    def width(self) -> int:
        """The width its widest cell (or its header) needs on one line."""
        return max([cell_len(self.header)] + [cell_len(cell.plain) for cell in self.cells])


def table_width(widths: Sequence[int]) -> int:
    """What a table of BOX without edges takes for columns of these content widths: one space of padding on
    each side of a column and one divider between two."""
    return sum(width + 2 for width in widths) + max(len(widths) - 1, 0)


def _fits(keys: Sequence[Column], chunk: Sequence[Column], width: int) -> bool:
    needed = [column.width for column in keys] + [min(c.width, WRAP_MIN) if c.wrap else c.width for c in chunk]
    return table_width(needed) <= width


def _chunks(keys: Sequence[Column], rest: Sequence[Column], width: int) -> list[list[Column]]:
    """`rest` cut, in order, into as few runs as fit `width` beside the key columns (at least one column a run),
    of even length where that fits too (9 sizes in 80 columns: 3 grids of 3, not 4 + 4 + 1)."""
    greedy: list[list[Column]] = [[]]
    for column in rest:
        if greedy[-1] and not _fits(keys, greedy[-1] + [column], width):
            greedy.append([column])
        else:
            greedy[-1].append(column)
    count = len(greedy)
    size = -(-len(rest) // count)  # ceil
    even = [list(rest[i:i + size]) for i in range(0, len(rest), size)]
    return even if len(even) == count and all(_fits(keys, chunk, width) for chunk in even) else greedy


def fold_tables(keys: Sequence[Column], rest: Sequence[Column], width: int, title: str | None = None,
                row_styles: Sequence[str] | None = None) -> list[Table]:
    """One table, or several when the columns do not fit `width` side by side: every table has the key columns
    and the next run of `rest`. The first table carries the title; the others say they continue it."""
    tables = []
    chunks = _chunks(keys, rest, width)
    for number, chunk in enumerate(chunks):
        heading = title if number == 0 or title is None else f"{title} (continued, {number + 1}/{len(chunks)})"
        table = Table(title=Text(heading) if heading else None, title_justify="left", box=BOX, show_edge=False,
                      header_style="bold")
        for column in [*keys, *chunk]:
            table.add_column(Text(column.header), justify=column.justify, no_wrap=not column.wrap)
        for row in range(len(keys[0].cells) if keys else 0):
            style = row_styles[row] if row_styles else ""
            table.add_row(*(column.cells[row] for column in [*keys, *chunk]), style=style or None)
        tables.append(table)
    return tables
