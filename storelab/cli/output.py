"""What the commands print: the console, tables, one-line errors, JSON, and value formats.

rich loads with the first thing printed, not before: a command that fails early, or prints
JSON, never pays for it.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

from storelab.units import format_ratio, format_share, format_size, is_missing

__all__ = [
    "bar",
    "emit",
    "error_line",
    "escape",
    "factors",
    "fmt_pct",
    "fmt_ratio",
    "fmt_size",
    "jsonable",
    "node_json",
    "out",
    "print_json",
    "table",
]

fmt_size = format_size
fmt_ratio = format_ratio
fmt_pct = format_share


@cache
def out() -> Any:
    """The console tables and summaries go to (rich loads with the first thing printed).
    Off a terminal rich would wrap at 80 columns; tables read better unwrapped in logs and CI."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=160)


def table(**settings: Any) -> Any:
    """A rich Table whose text cells and title are shown as they are: a chunker id like
    ``[fixed/size=64KiB]`` is data, not markup (rich loads with the first table)."""
    from rich.markup import escape as rich_escape
    from rich.table import Table

    class PlainTable(Table):
        def add_row(self, *cells: Any, **options: Any) -> None:
            super().add_row(*(rich_escape(c) if isinstance(c, str) else c for c in cells), **options)

    if isinstance(settings.get("title"), str):
        settings["title"] = rich_escape(settings["title"])
    return PlainTable(**settings)


def escape(text: str) -> str:
    """``text`` shown as it is in rich markup."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def error_line(message: str) -> None:
    """One line on stderr, never wrapped or styled, so scripts and logs can grep it."""
    print(" ".join(message.split()), file=sys.stderr)


def print_json(value: Any) -> None:
    """``value`` as indented JSON on stdout."""
    print(json.dumps(value, indent=1, default=str))


def jsonable(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """DataFrame records as JSON values: NaN and NA become null, numpy scalars plain numbers,
    timestamps ISO 8601."""

    def clean(value: Any) -> Any:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        if hasattr(value, "isoformat"):  # timestamps
            return value.isoformat()
        if hasattr(value, "item"):
            value = value.item()
        return None if is_missing(value) else value

    return [{k: clean(v) for k, v in r.items()} for r in records]


def emit(frame: Any, as_json: bool, title: str, columns: Sequence[str], cells: Callable[[Any], Sequence[str]]) -> None:
    """A DataFrame as JSON records, or as a table (the first column left-aligned)."""
    if as_json:
        print(json.dumps(jsonable(frame.to_dict("records")), indent=1))
        return
    shown = table(title=title, title_justify="left")
    for number, col in enumerate(columns):
        shown.add_column(col, justify="left" if number == 0 else "right", overflow="fold")
    for row in frame.itertuples():
        shown.add_row(*cells(row))
    out().print(shown)


def factors(row: Any) -> str:
    """``dedup × compression = reduction``, each shown only where it was measured."""
    if is_missing(row.compression_ratio):
        return fmt_ratio(row.dedup_ratio)
    return f"{fmt_ratio(row.dedup_ratio)} × {fmt_ratio(row.compression_ratio)} = {fmt_ratio(row.reduction_ratio)}"


def bar(share: float, width: int = 16) -> str:
    """A bar of ``share`` × ``width`` cells, in eighths of a cell.

    >>> bar(0.5, 4), bar(1 / 32, 4)
    ('██', '▏')
    """
    eighths = round(max(0.0, min(1.0, float(share))) * width * 8)
    return "█" * (eighths // 8) + ("", "▏", "▎", "▍", "▌", "▋", "▊", "▉")[eighths % 8]


def node_json(node: Any) -> dict[str, Any]:
    """A castore root node as JSON."""
    from storelab.castore import DirectoryNode, FileNode

    if isinstance(node, DirectoryNode):
        return {"kind": "directory", "digest": node.digest.hex(), "size": node.size}
    if isinstance(node, FileNode):
        return {"kind": "file", "digest": node.digest.hex(), "size": node.size, "executable": node.executable}
    return {"kind": "symlink", "target": os.fsdecode(node.target)}
