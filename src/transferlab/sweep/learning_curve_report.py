"""A data-efficiency sweep's learning curves in words and raw numbers: the report's "Learning
curve" section (fitted parameters, per-size means, images scratch would need) and the
learning_curve.json and runs.csv a study committed under docs/ carries beside its plots."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from transferlab.results import read_json, write_json
from transferlab.sweep.learning_curve import (
    RESAMPLES,
    RUNS_COLUMNS,
    Arm,
    CurveFit,
    arm_record,
    describe_match,
    size_label,
    size_means,
)
from transferlab.sweep.runs import Sweep
from transferlab.tables import markdown_table


def learning_curve_section(arms: list[Arm]) -> list[str]:
    """Per pair of arms: the fitted a, b, c, and per size both means and what scratch would need."""
    if not any(arm.fit for arm in arms):
        return []
    lines = [
        "## Learning curve",
        "",
        "acc(n) = a - b·n^(-c) fitted to every run's test accuracy per arm (n: training images "
        f"per class); [ ]: 2.5-97.5 percentiles of {RESAMPLES} refits on seeds resampled within "
        "each size. Accuracy: mean over seeds [95% t-interval]. *Scratch would need*: where the "
        "scratch curve reaches the pretrained mean, read off the fit inside the measured sizes only. "
        "Raw numbers: learning_curve.json, runs.csv.",
        "",
    ]
    for group, pair in _pairs(arms).items():
        lines += [f"### {group}", ""] if group else []
        params = [[a.label, *_params(a)] for a in pair]
        lines += [markdown_table(["arm", "a", "b", "c"], params), ""]
        lines += [markdown_table(*_size_rows(pair)), ""]
    return lines


def _pairs(arms: list[Arm]) -> dict[str, list[Arm]]:
    """Arms by their other swept choices, pretrained before scratch."""
    pairs: dict[str, list[Arm]] = {}
    for arm in arms:
        pairs.setdefault(arm.group, []).append(arm)
    return {g: sorted(p, key=lambda a: not a.pretrained) for g, p in pairs.items()}


def _scratch_fit(pair: list[Arm]) -> CurveFit | None:
    return next((a.fit for a in pair if not a.pretrained), None)


def _params(arm: Arm) -> list[str]:
    if not (arm.fit and arm.band):
        return ["- (fewer than 3 sizes)"] * 3
    values = (arm.fit.a, arm.fit.b, arm.fit.c)
    bounds = zip(values, arm.band.params_low, arm.band.params_high, strict=True)
    return [f"{v:.4f} [{low:.4f}, {high:.4f}]" for v, low, high in bounds]


def _size_rows(pair: list[Arm]) -> tuple[list[str], list[list[str]]]:
    """Header and rows: each arm's mean per size, and the scratch images matching pretrained."""
    header = [
        "images per class",
        *(f"{'pretrained' if a.pretrained else 'scratch'} acc" for a in pair),
    ]
    runs = pd.concat([a.runs for a in pair])
    means = [size_means(a.runs) for a in pair]
    scratch = _scratch_fit(pair)
    matched = pair[0].pretrained and scratch is not None
    header += ["scratch would need (images per class)"] if matched else []
    rows = []
    for size in sorted(runs["images_per_class"].unique()):
        row = [size_label(size, runs), *(_acc(m, size) for m in means)]
        if matched and size in means[0].index:
            row.append(describe_match(scratch, means[0].loc[size, "mean"]))
        rows.append(row + ["-"] * (len(header) - len(row)))
    return header, rows


def _acc(means: pd.DataFrame, size: float) -> str:
    if size not in means.index:
        return "-"
    mean, low, high = means.loc[size, ["mean", "low", "high"]]
    return f"{mean:.4f}" if math.isnan(low) else f"{mean:.4f} [{low:.4f}, {high:.4f}]"


def write_raw_numbers(sweep: Sweep, arms: list[Arm]) -> None:
    """learning_curve.json (fits, per-size means, what scratch would need) and runs.csv (one
    row per ok run), so a study committed under docs/ carries its numbers, not only a plot."""
    json_path, csv_path = sweep.folder / "learning_curve.json", sweep.folder / "runs.csv"
    for stale in (json_path, csv_path):
        stale.unlink(missing_ok=True)
    if not arms:
        return
    records = [arm_record(a, _scratch_fit(pair)) for pair in _pairs(arms).values() for a in pair]
    write_json(json_path, {"model": "acc(n) = a - b * n^(-c)", "arms": records})
    runs = pd.concat([a.runs for a in arms])
    keys = [k for k in sweep.cells if k not in RUNS_COLUMNS and "train_per_class" not in k]
    table = runs[keys].assign(
        train_per_class=runs["train_per_class"].astype("Int64"),
        images_per_class=runs["images_per_class"],
        pretrained=runs["is_pretrained"],
        seed=[read_json(Path(p)).get("seed") for p in runs["results"]],
        acc=runs["acc"],
    )
    table.to_csv(csv_path, index=False, na_rep="null")
