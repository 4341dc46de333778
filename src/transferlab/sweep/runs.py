"""A sweep's jobs, read from their folders: results.json for outcomes, .hydra for what was swept."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from transferlab.results import RESULTS_FILE, read_json

METRICS = {  # report column -> where results.json keeps it
    "acc": ("test", "test/acc"),
    "f1": ("test", "test/f1"),
    "log_loss": ("test", "test/log_loss"),
    "train_s": (None, "train_seconds"),
    "images_per_s": (None, "images_per_second"),
}


def job_dirs(sweep_dir: Path) -> list[Path]:
    """Every job folder of the sweep: those Hydra started (.hydra/) or that wrote a results.json."""
    found = {p.parent for p in sweep_dir.rglob(".hydra") if p.is_dir()}
    found |= {p.parent for p in sweep_dir.rglob(RESULTS_FILE)}
    return sorted((d for d in found if "wandb" not in d.parts), key=_job_order)


@dataclass
class Sweep:
    """The jobs of one sweep folder, one row each, and the override keys that vary between them."""

    folder: Path
    runs: pd.DataFrame
    swept: list[str]

    @property
    def cells(self) -> list[str]:
        """What a table row stands for: the swept keys except the seed, which gives error bars."""
        return [k for k in self.swept if k != "seed"]

    @property
    def ok(self) -> pd.DataFrame:
        return self.runs[self.runs["status"] == "ok"]


def load_sweep(sweep_dir: Path) -> Sweep:
    """Read every job folder under ``sweep_dir``: its overrides, status, error, metrics, history."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"{sweep_dir}: no such sweep folder (multirun/<date>/<time>)")
    rows = [_job_row(d, sweep_dir) for d in job_dirs(sweep_dir)]
    if not rows:
        raise FileNotFoundError(f"{sweep_dir}: no job folders (with .hydra/ or results.json) in it")
    runs = pd.DataFrame(rows)
    overrides = pd.DataFrame(list(runs.pop("overrides")), dtype="object").fillna("-")
    swept = [k for k in overrides.columns if overrides[k].nunique() > 1]
    runs = pd.concat([overrides[swept], runs.drop(columns=swept, errors="ignore")], axis=1)
    return Sweep(folder=sweep_dir, runs=runs, swept=swept)


def _job_row(job: Path, sweep_dir: Path) -> dict[str, Any]:
    results_file = job / RESULTS_FILE
    results = read_json(results_file) if results_file.is_file() else {}
    row: dict[str, Any] = {
        "job": str(job.relative_to(sweep_dir)),
        "overrides": read_overrides(job),
        "status": results.get("status", "no results.json (killed, or still running)"),
        "error": results.get("error", ""),
        "results": str(results_file),
        "is_pretrained": results.get("pretrained"),  # a bool, unlike the override's text
        "train_per_class": results.get("train_per_class"),
        "images_per_class": images_per_class(results),
        "history": results.get("history", []),
        "logs": job_logs(results, sweep_dir),
    }
    for column, (section, key) in METRICS.items():
        source = results.get(section, {}) if section else results
        row[column] = source.get(key, float("nan"))
    return row


def read_overrides(job: Path) -> dict[str, str]:
    """The job's command-line and sweep overrides as key -> value, e.g. {'model': 'resnet18'}."""
    path = job / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return {}
    pairs = [o.split("=", 1) for o in yaml.safe_load(path.read_text()) or [] if "=" in o]
    return {k.lstrip("+~"): v for k, v in pairs}


def job_logs(results: dict[str, Any], sweep_dir: Path) -> dict[str, str]:
    """The scheduler's log files of a job (submitit's stdout and stderr), as paths relative to the
    sweep folder where they lie in it, so a report can link them."""
    logs, base = {}, sweep_dir.resolve()
    for stream in ("stdout", "stderr"):
        path = Path(results.get("cluster_job", {}).get(stream) or "")
        if path.name and path.is_file():
            logs[stream] = str(path.relative_to(base) if path.is_relative_to(base) else path)
    return logs


def images_per_class(results: dict[str, Any]) -> float | None:
    """Training images per class: the mean of the counts trained on (a class with fewer images
    than data.train_per_class asked for trains on all it has), else the configured subset, else
    the whole train split / classes."""
    if counts := results.get("train_images_per_class"):
        return sum(counts.values()) / len(counts)
    if results.get("train_per_class"):
        return float(results["train_per_class"])
    train, classes = results.get("splits", {}).get("train"), results.get("classes")
    return train / len(classes) if train and classes else None


def _job_order(job: Path) -> tuple:
    """Job 2 before job 10; numbered folders before named ones."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in job.parts)
