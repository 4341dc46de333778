"""audit.py's outputs: leakage.csv, suspects.csv and audit.md with image grids of the top ones."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from transferlab.data.base import ClassificationDataModule
from transferlab.data.sample_grid import image_grid
from transferlab.data.transforms import denormalize
from transferlab.errors import ConfigError
from transferlab.features.audit import Pair, label_suspects, leakage_pairs
from transferlab.features.cache import FeatureCache
from transferlab.features.extract import Extracted, frozen_features
from transferlab.tables import markdown_table, write_csv

log = logging.getLogger(__name__)


Leaks = list[tuple[str, Pair]]


def cross_split_leaks(cfg: DictConfig) -> tuple[Leaks, Extracted, ClassificationDataModule]:
    """Val/test images that copy training images, by split, from the config's backbone's
    cached features; with the features and the DataModule they came from."""
    extracted, dm = frozen_features(cfg, FeatureCache(cfg.features.cache_dir))
    datasets = split_sets(dm)
    splits = [name for name in datasets if name != "train"]

    def pixels(split: str) -> Callable[[int], Any]:
        return lambda i: datasets[split][i][0]

    leaks: Leaks = []
    for split in splits:
        pairs = leakage_pairs(
            extracted.splits["train"],
            extracted.splits[split],
            pixels("train"),
            pixels(split),
            cfg.audit.neighbours,
            cfg.audit.hash_distance,
        )
        leaks += [(split, p) for p in pairs]
    return leaks, extracted, dm


def split_sets(dm: ClassificationDataModule) -> dict[str, Any]:
    """The DataModule's splits by name, test left out where it is the val split (no test data)."""
    sets = {"train": dm.train_set, "val": dm.val_set}
    if dm.test_set is not dm.val_set:
        sets["test"] = dm.test_set
    return sets


def check_leakage(cfg: DictConfig) -> None:
    """train.py's opt-in check before fitting (``audit.leakage=warn|error``)."""
    mode = (cfg.get("audit") or {}).get("leakage")
    if not mode:
        return
    if mode not in ("warn", "error"):
        raise ConfigError(f"audit.leakage={mode}: warn, error or null")
    leaks, extracted, _ = cross_split_leaks(cfg)
    if not leaks:
        log.info("audit.leakage: no val/test image copies a training image")
        return
    ids = extracted.splits
    examples = ", ".join(
        f"{ids['train'].ids[p.train].item()} ~ {ids[split].ids[p.other].item()}"
        for split, p in leaks[:3]
    )
    message = (
        f"{len(leaks)} val/test images copy training images (e.g. {examples}); remove one of "
        "each pair, and see them all with python audit.py and this run's data overrides"
    )
    if mode == "error":
        raise ConfigError(f"audit.leakage=error: {message}, or set audit.leakage=warn")
    log.warning("audit.leakage: %s", message)


def run_audit(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    """Audit the config's data with the config's backbone; write the files; return the counts."""
    leaks, extracted, dm = cross_split_leaks(cfg)
    datasets = split_sets(dm)
    splits = [name for name in datasets if name != "train"]
    spec, train = extracted.input, extracted.splits["train"]
    leak_rows = [
        {
            "train_id": train.ids[p.train].item(),
            "split": split,
            "other_id": extracted.splits[split].ids[p.other].item(),
            "similarity": round(p.similarity, 4),
            "hash_distance": p.hash_distance,
        }
        for split, p in leaks
    ]
    write_csv(
        leak_rows,
        out_dir / "leakage.csv",
        ["train_id", "split", "other_id", "similarity", "hash_distance"],
    )
    classes = dm.classes
    suspects = label_suspects(train, cfg.audit.folds, cfg.seed)
    suspect_rows = [
        {
            "id": s["id"],
            "label": classes[s["label"]],
            "predicted": classes[s["predicted"]],
            "confidence": s["confidence"],
        }
        for s in suspects
        if s["predicted"] != s["label"]
    ]
    write_csv(suspect_rows, out_dir / "suspects.csv", ["id", "label", "predicted", "confidence"])

    top = cfg.audit.show
    images, captions = [], []
    for split, p in leaks[: top // 2]:
        images += [
            denormalize(datasets["train"][p.train][0], spec),
            denormalize(datasets[split][p.other][0], spec),
        ]
        captions += [
            f"train {train.ids[p.train].item()}",
            f"{split} {extracted.splits[split].ids[p.other].item()} ({p.similarity:.3f})",
        ]
    if images:
        image_grid(images, captions, out_dir / "leakage.png", columns=4)
    shown = [s for s in suspects if s["predicted"] != s["label"]][:top]
    if shown:
        image_grid(
            [denormalize(datasets["train"][s["row"]][0], spec) for s in shown],
            [
                f"{s['id']}\nlabel {classes[s['label']]}, looks {classes[s['predicted']]}"
                for s in shown
            ],
            out_dir / "suspects.png",
            columns=4,
        )
    counts = {
        "train": len(train.labels),
        **{s: len(extracted.splits[s].labels) for s in splits},
        "leaked_pairs": len(leak_rows),
        "suspects": len(suspect_rows),
    }
    write_markdown(out_dir / "audit.md", cfg, counts, leak_rows[:top], suspect_rows[:top])
    return counts


def write_markdown(path: Path, cfg: DictConfig, counts: dict, leaks: list, suspects: list) -> None:
    splits = ", ".join(f"{counts[s]} {s}" for s in ("val", "test") if s in counts)
    lines = [
        "# Data audit",
        "",
        f"Backbone `{cfg.model.name}` (frozen ImageNet features), data `{cfg.data.get('name')}`: "
        f"{counts['train']} training images against {splits}.",
        "",
        *section(
            f"Leakage: {counts['leaked_pairs']} near-duplicate pairs across splits",
            f"A val/test image and one of its {cfg.audit.neighbours} nearest training images "
            "(cosine similarity of the features) whose perceptual hashes differ in at most "
            f"{cfg.audit.hash_distance} of 256 bits. All pairs: `leakage.csv`.",
            leaks,
            "leakage.png",
        ),
        *section(
            f"Label noise: {counts['suspects']} training images an out-of-fold probe disagrees with",
            "Ranked by the probe's confidence that the given label is wrong; check the top ones "
            "first. All: `suspects.csv`.",
            suspects,
            "suspects.png",
        ),
    ]
    path.write_text("\n".join(lines))


def section(title: str, text: str, rows: list[dict], image: str) -> list[str]:
    """A heading, what it lists, its top rows as a table and their image grid."""
    lines = [f"## {title}", "", text, ""]
    if rows:
        table = markdown_table(list(rows[0]), [list(r.values()) for r in rows])
        lines += [table, "", f"![{title.split(':')[0]}]({image})", ""]
    return lines
