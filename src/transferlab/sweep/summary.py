"""The sweep's comparison table: one row per cell (swept values but the seed), mean +- std;
test accuracy with its 95% CI where the runs stored per-image predictions."""

from __future__ import annotations

import math

import pandas as pd
from rich.console import Console
from rich.table import Table

from transferlab.sweep.evidence import Evidence, label
from transferlab.sweep.runs import METRICS, Sweep
from transferlab.tables import markdown_table

DECIMALS = {"acc": 4, "f1": 4, "log_loss": 4, "train_s": 1, "images_per_s": 1}
HEADERS = {
    "acc": "test acc",
    "f1": "test F1",
    "log_loss": "test log loss",
    "train_s": "train s",
    "images_per_s": "images/s",
}


STATS = ("_mean", "_std", "_low", "_high")  # column suffixes that are numbers, not cell keys


def summarize(sweep: Sweep, evidence: Evidence | None = None) -> pd.DataFrame:
    """Per cell: runs ok/total and each metric's mean and std over the successful runs (seeds);
    with ``evidence``, test accuracy's mean and 95% CI over seeds and test images instead."""
    runs = sweep.runs.copy()
    keys = sweep.cells or ["_sweep"]
    if not sweep.cells:
        runs["_sweep"] = "all jobs"  # nothing but seeds swept: one row
    order = list(dict.fromkeys(runs[keys].itertuples(index=False, name=None)))
    rows = []
    for cell in order:
        members = runs[(runs[keys] == pd.Series(cell, index=keys)).all(axis=1)]
        ok = members[members["status"] == "ok"]
        row = dict(zip(keys, cell, strict=True))
        row["runs"] = f"{len(ok)}/{len(members)}"
        for metric in METRICS:
            values = ok[metric].astype(float).dropna()
            row[f"{metric}_mean"] = values.mean() if len(values) else math.nan
            row[f"{metric}_std"] = values.std(ddof=1) if len(values) > 1 else math.nan
        values = dict(zip(sweep.cells, map(str, cell), strict=False))  # no cells: {}, "all jobs"
        found = evidence and evidence.cell(label(values))
        if found:
            row["acc_mean"], row["acc_low"], row["acc_high"] = found.acc, found.low, found.high
        rows.append(row)
    return pd.DataFrame(rows)


def mean_std(mean: float, std: float, decimals: int) -> str:
    """'0.8123 ± 0.0042'; just the mean for a single run; '-' when no run succeeded."""
    if math.isnan(mean):
        return "-"
    if math.isnan(std):
        return f"{mean:.{decimals}f}"
    return f"{mean:.{decimals}f} ± {std:.{decimals}f}"


def mean_ci(row: pd.Series, metric: str) -> str:
    """'0.8123 (0.8071–0.8170)' where the cell has a CI, else mean ± std."""
    low, high = row.get(f"{metric}_low", math.nan), row.get(f"{metric}_high", math.nan)
    mean, decimals = row[f"{metric}_mean"], DECIMALS[metric]
    if pd.isna(low):
        return mean_std(mean, row[f"{metric}_std"], decimals)
    return f"{mean:.{decimals}f} ({low:.{decimals}f}–{high:.{decimals}f})"


def display_rows(table: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Header and text cells shared by the markdown and the terminal table."""
    keys = [c for c in table.columns if not c.endswith(STATS)]
    header = [k.lstrip("_") for k in keys] + [HEADERS[m] for m in METRICS]
    if "acc_low" in table.columns:
        header[len(keys) + list(METRICS).index("acc")] += " (95% CI)"
    body = []
    for _, row in table.iterrows():
        body.append([str(row[k]) for k in keys] + [mean_ci(row, m) for m in METRICS])
    return header, body


def to_markdown(table: pd.DataFrame) -> str:
    header, body = display_rows(table)
    return markdown_table(header, body)


def print_table(table: pd.DataFrame, title: str, console: Console | None = None) -> None:
    header, body = display_rows(table)
    rich_table = Table(title=title)
    for i, name in enumerate(header):
        rich_table.add_column(name, justify="left" if i < len(header) - len(METRICS) else "right")
    for cells in body:
        rich_table.add_row(*cells)
    (console or Console()).print(rich_table)
