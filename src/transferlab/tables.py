"""The one markdown table writer and the one CSV writer: reports, eval breakdowns, predictions,
data surveys and benchmarks all use them. Numpy-only callers (the torch-free ONNX CLI) too."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path
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


def write_csv(rows: Sequence[dict[str, Any]], path: Path, columns: Sequence[str] = ()) -> Path:
    """``rows`` as a UTF-8 CSV with the first row's keys (or ``columns``) as the header.

    A file name that is not valid UTF-8 is written with its odd bytes as ``\\xNN``, so the
    CSV stays readable while naming the file unambiguously.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns or (rows[0] if rows else [])))
        writer.writeheader()
        writer.writerows({k: printable(v) for k, v in row.items()} for row in rows)
    return path


def printable(value: Any) -> Any:
    """Text as it can be written to a UTF-8 file: undecodable file-name bytes as ``\\xNN``."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return value
