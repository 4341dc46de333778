"""The one markdown table writer: reports, eval breakdowns, data surveys and benchmarks all use it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


def cell(value: Any, decimals: int = 4) -> str:
    """A value as one table cell: floats rounded, no line breaks, pipes escaped."""
    text = f"{value:.{decimals}f}" if isinstance(value, float) else str(value)
    return " ".join(text.split()).replace("|", "\\|")


def markdown_table(
    header: Sequence[Any],
    rows: Iterable[Sequence[Any]],
    right: Iterable[int] = (),
    decimals: int = 4,
) -> str:
    """A GitHub-flavoured markdown table; columns whose index is in ``right`` align right."""
    right = set(right)
    rule = ["---:" if i in right else "---" for i in range(len(header))]
    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "|".join(rule) + "|"]
    lines += ["| " + " | ".join(cell(v, decimals) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def dict_rows_table(rows: Sequence[dict[str, Any]], decimals: int = 4) -> str:
    """``markdown_table`` of records sharing the first record's keys."""
    header = list(rows[0]) if rows else []
    return markdown_table(header, ([r[h] for h in header] for r in rows), decimals=decimals)
