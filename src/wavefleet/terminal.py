"""Tables for the terminal that never hide what they hold.

Rich squeezes a table wider than the terminal by cutting cells with "…", which loses the end of
an id, a URL or a model name on an 80-column terminal. `fit` shows such a table as records
instead (one block per row, `column: value` lines, like psql's expanded display), and a table
that fits as it is.

    table = folding_table("id", "name", "models", title="API keys")
    table.add_row(...)
    console.print(fit(table, console))
"""

from __future__ import annotations

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

__all__ = ["fit", "folding_table"]


def folding_table(*columns: str, title: str | None = None) -> Table:
    """A table whose cells fold onto the next line rather than being cut."""
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for name in columns:
        table.add_column(name, overflow="fold")
    return table


def fit(table: Table, console: Console) -> RenderableType:
    """`table` if every cell fits on `console` unbroken, else the same rows as records."""
    natural = table.__rich_measure__(console, console.options).maximum
    if natural <= console.width:
        return table
    headers = [str(column.header) for column in table.columns]
    columns = [list(column.cells) for column in table.columns]
    blocks: list[RenderableType] = []
    if table.title:
        blocks.append(Text(str(table.title), style="bold"))
    for row in zip(*columns, strict=True):
        record = Table.grid(padding=(0, 1))
        record.add_column(style="dim", no_wrap=True)
        record.add_column(overflow="fold")
        for header, cell in zip(headers, row, strict=True):
            record.add_row(f"{header}:", cell)
        blocks += [record, Text("")]
    return Group(*blocks)
