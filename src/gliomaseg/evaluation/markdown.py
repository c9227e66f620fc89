"""Markdown building blocks shared by every report: a pipe table and the number format of its cells.

Pipe tables are written here rather than with ``DataFrame.to_markdown``: that needs the
``tabulate`` package for what is a three-line join. They sit in :mod:`gliomaseg.evaluation`, next
to the HTML blocks of :mod:`gliomaseg.evaluation.html`, so that exploration, studies and
radiogenomics all use the one implementation without importing each other.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = ["md_table", "num"]


def num(value: Any, digits: int = 3) -> str:
    """A number for a table: fixed digits, ``-`` for missing, p-values below 0.001 as ``<0.001``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown pipe table; cells are formatted with :func:`num` unless already strings."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [c if isinstance(c, str) else num(c) for c in row]
        lines.append("| " + " | ".join(cells).replace("\n", " ") + " |")
    return "\n".join(lines)
