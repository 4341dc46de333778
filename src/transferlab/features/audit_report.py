"""audit.py's outputs: leakage.csv, suspects.csv and audit.md with image grids of the top ones."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from transferlab.data.transforms import denormalize
from transferlab.evaluation.figures import image_grid
from transferlab.features.audit import Pair, label_suspects, leakage_pairs
from transferlab.features.cache import FeatureCache
from transferlab.features.extract import frozen_features
from transferlab.tables import markdown_table, write_csv

log = logging.getLogger(__name__)


def run_audit(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    """Audit the config's data with the config's backbone; write the files; return the counts."""
    extracted, dm = frozen_features(cfg, FeatureCache(cfg.features.cache_dir))
    datasets = {"train": dm.train_set, "val": dm.val_set, "test": dm.test_set}
    splits = ["val"] + (["test"] if dm.test_set is not dm.val_set else [])
    spec, train = extracted.input, extracted.splits["train"]

    def pixels(split: str):
        return lambda i: datasets[split][i][0]

    leaks: list[tuple[str, Pair]] = []
    for split in splits:
        pairs = leakage_pairs(
            train,
            extracted.splits[split],
            pixels("train"),
            pixels(split),
            cfg.audit.neighbours,
            cfg.audit.hash_distance,
        )
        leaks += [(split, p) for p in pairs]
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
    lines = [
        "# Data audit",
        "",
        f"Backbone `{cfg.model.name}` (frozen ImageNet features), data `{cfg.data.get('name')}`: "
        f"{counts['train']} training images against "
        + ", ".join(f"{counts[s]} {s}" for s in ("val", "test") if s in counts)
        + ".",
        "",
        f"## Leakage: {counts['leaked_pairs']} near-duplicate pairs across splits",
        "",
        f"A val/test image and one of its {cfg.audit.neighbours} nearest training images (cosine "
        f"similarity of the features) whose perceptual hashes differ in at most "
        f"{cfg.audit.hash_distance} of 256 bits. All pairs: `leakage.csv`.",
        "",
    ]
    if leaks:
        lines += [
            markdown_table(list(leaks[0]), [list(r.values()) for r in leaks]),
            "",
            "![pairs](leakage.png)",
            "",
        ]
    lines += [
        f"## Label noise: {counts['suspects']} training images an out-of-fold probe disagrees with",
        "",
        "Ranked by the probe's confidence that the given label is wrong; check the top ones "
        "first. All: `suspects.csv`.",
        "",
    ]
    if suspects:
        lines += [
            markdown_table(list(suspects[0]), [list(r.values()) for r in suspects]),
            "",
            "![suspects](suspects.png)",
            "",
        ]
    path.write_text("\n".join(lines))
