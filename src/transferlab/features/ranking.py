"""Rank backbones before training: transferability scores of each one's frozen features.

One row per backbone: the scores of ``scores.py`` on the train split (kNN and the probe are
measured on val), the extraction time and the cache entries they came from. Given a sweep of
fine-tuned runs, each score's Kendall tau against those runs' test accuracies says how far to
trust it on this data.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig
from scipy.special import softmax
from scipy.stats import kendalltau

from transferlab.errors import ConfigError
from transferlab.features import scores
from transferlab.features.cache import FeatureCache
from transferlab.features.extract import Extracted, frozen_features
from transferlab.models.weights import WeightsNotFoundError
from transferlab.results import write_json
from transferlab.tables import markdown_table

log = logging.getLogger(__name__)

RANKING_FILE = "ranking.json"
# name -> its value on a backbone's extracted splits; higher is better for every one
SCORES: dict[str, Callable[[Extracted], float]] = {
    "logme": lambda e: scores.logme(e.splits["train"].features, e.splits["train"].labels),
    "hscore": lambda e: scores.hscore(e.splits["train"].features, e.splits["train"].labels),
    "nce": lambda e: scores.nce(softmax(e.splits["train"].logits, 1), e.splits["train"].labels),
    "leep": lambda e: scores.leep(softmax(e.splits["train"].logits, 1), e.splits["train"].labels),
    "knn_acc": lambda e: scores.knn_accuracy(*_train_val(e)),
    "probe_acc": lambda e: scores.probe_accuracy(*_train_val(e)),
}


def _train_val(e: Extracted) -> tuple[np.ndarray, ...]:
    train, val = e.splits["train"], e.splits["val"]
    return train.features, train.labels, val.features, val.labels


def score_backbone(name: str, cfg: DictConfig, cache: FeatureCache) -> dict[str, Any]:
    """One ranking row: scores, extraction seconds and cache paths, or why it was skipped."""
    try:
        extracted, _ = frozen_features(cfg, cache, splits=("train", "val"))  # no test images
    except ConfigError as err:
        if not isinstance(err, WeightsNotFoundError):
            raise
        log.warning("skipping %s: %s", name, err)
        return {"model": name, "skipped": str(err)}
    values = {score: float(fn(extracted)) for score, fn in SCORES.items()}
    return {
        "model": name,
        "scores": values,
        "extract_seconds": round(extracted.seconds, 2),
        "cache_hits": extracted.hits,
        "features": {split: str(p) for split, p in extracted.paths.items()},
    }


def sweep_accuracies(sweep_dir: Path) -> dict[str, float]:
    """Mean test accuracy per model of a sweep's ok runs (pretrained ones when it swept that)."""
    from transferlab.sweep.runs import load_sweep

    runs = load_sweep(Path(sweep_dir)).ok
    if "model" not in runs:
        raise ConfigError(f"sweep={sweep_dir}: its runs do not vary model=..., nothing to rank")
    if runs["is_pretrained"].eq(True).any():
        runs = runs[runs["is_pretrained"].eq(True)]
    return {str(k): float(v) for k, v in runs.groupby("model")["acc"].mean().items()}


def kendall_taus(rows: Sequence[dict[str, Any]], accuracies: dict[str, float]) -> dict[str, Any]:
    """Each score's Kendall tau against fine-tuned accuracy, over backbones that have both."""
    scored = [r for r in rows if "scores" in r and r["model"] in accuracies]
    taus: dict[str, Any] = {"backbones": [r["model"] for r in scored]}
    for score in SCORES:
        if len(scored) < 2:
            taus[score] = None
            continue
        tau = kendalltau(
            [r["scores"][score] for r in scored], [accuracies[r["model"]] for r in scored]
        )
        taus[score] = None if np.isnan(tau.statistic) else round(float(tau.statistic), 3)
    return taus


def ranking_table(
    rows: Sequence[dict[str, Any]], accuracies: dict[str, float] | None = None
) -> str:
    """Markdown: backbones best-LogME first, one column per score (skipped ones at the end)."""
    scored = sorted((r for r in rows if "scores" in r), key=lambda r: -r["scores"]["logme"])
    header = ["model", *SCORES, "extract s"] + (["fine-tuned acc"] if accuracies else [])
    body = []
    for r in scored:
        extra = [accuracies.get(r["model"], "-")] if accuracies else []
        body.append([r["model"], *(r["scores"][s] for s in SCORES), r["extract_seconds"], *extra])
    for r in rows:
        if "skipped" in r:
            body.append(
                [r["model"], f"skipped: {r['skipped'].split(':')[0]}", *["-"] * (len(header) - 2)]
            )
    return markdown_table(header, body)


def write_ranking(out_dir: Path, rows: list[dict[str, Any]], sweep_dir: Path | None) -> dict:
    """ranking.json, ranking.md and ranking.png in ``out_dir`` (and ranking.json in the sweep)."""
    ranking: dict[str, Any] = {"models": rows}
    accuracies = None
    if sweep_dir is not None:
        accuracies = sweep_accuracies(sweep_dir)
        ranking["sweep"] = {
            "folder": str(sweep_dir),
            "test_acc": accuracies,
            "kendall_tau": kendall_taus(rows, accuracies),
        }
    write_json(out_dir / RANKING_FILE, ranking)
    text = "# Backbones ranked before training\n\n" + ranking_table(rows, accuracies) + "\n"
    if accuracies is not None:
        taus = ranking["sweep"]["kendall_tau"]
        text += "\nKendall tau of each score against the fine-tuned test accuracy " + (
            f"({len(taus['backbones'])} backbones):\n\n"
            + markdown_table(
                list(SCORES), [[taus[s] if taus[s] is not None else "-" for s in SCORES]]
            )
            + "\n"
        )
        write_json(Path(sweep_dir) / RANKING_FILE, ranking)
    (out_dir / "ranking.md").write_text(text)
    plot_ranking(rows, accuracies, out_dir / "ranking.png")
    return ranking


def plot_ranking(
    rows: Sequence[dict[str, Any]], accuracies: dict[str, float] | None, path: Path
) -> None:
    """One panel per score: a bar per backbone (against fine-tuned accuracy when known)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scored = [r for r in rows if "scores" in r]
    if not scored:
        return
    fig, axes = plt.subplots(1, len(SCORES), figsize=(3.2 * len(SCORES), 3.2), squeeze=False)
    names = [r["model"] for r in scored]
    for ax, score in zip(axes[0], SCORES, strict=True):
        values = [r["scores"][score] for r in scored]
        if accuracies and all(n in accuracies for n in names):
            ax.scatter(values, [accuracies[n] for n in names])
            for v, n in zip(values, names, strict=True):
                ax.annotate(n, (v, accuracies[n]), fontsize=7)
            ax.set_ylabel("fine-tuned test acc")
        else:
            ax.barh(names, values)
        ax.set_title(score)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
