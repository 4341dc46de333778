"""Fine-tuning strategies with few labels: ImageNet-pretrained EfficientNet-Lite0 on Fashion-MNIST at
100 images per class under every strategy in conf/finetune/, against the same network from
scratch with the same budget. Each run is train.py's own path (compose -> build -> Trainer ->
test the best checkpoint -> results.json); this script only picks the overrides and prints a table.

    nice -n 10 python bench/finetune.py                      # all strategies + scratch
    python bench/finetune.py --runs linear_probe scratch --epochs 2 trainer.limit_val_batches=2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

from transferlab.tables import markdown_table
from transferlab.training.run import train

ROOT = Path(__file__).resolve().parents[1]
# run name -> overrides: every strategy in conf/finetune/, plus `full` from random weights
STRATEGIES = sorted(p.stem for p in (ROOT / "conf" / "finetune").glob("*.yaml"))
EXTRA = {"linear_probe": ["optimizer.lr=3e-3"]}  # only the head trains: a larger lr (RESULTS.md)
RUNS = {
    **{name: [f"finetune={name}", *EXTRA.get(name, [])] for name in STRATEGIES},
    "scratch": ["finetune=full", "pretrained=false"],
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--per-class", type=int, default=100, help="training images per class")
    parser.add_argument("--size", type=int, default=64, help="input size in pixels")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "bench_finetune")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
    return parser.parse_args()


def run(name: str, args: argparse.Namespace) -> dict:
    """One strategy through transferlab.training.run.train, as `python train.py ...` would run it."""
    overrides = [
        "model=efficientnet_lite0",
        f"data.train_per_class={args.per_class}",
        f"input.size={args.size}",
        "input.crop_pct=1.0",
        f"trainer.max_epochs={args.epochs}",
        "trainer.limit_val_batches=8",  # 8 batches of validation images pick the best epoch
        "callbacks.progress_bar=null",
        f"paths.output_dir={args.out / name}",
        f"paths.data_dir={args.out / 'data'}",
        *RUNS[name],
        *args.overrides,
    ]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    finetune = name if name != "scratch" else "full"
    return train(cfg, choices={"model": "efficientnet_lite0", "finetune": finetune})


def table(rows: list[dict]) -> str:
    """Markdown table: strategy, weights, test accuracy, best val accuracy, times."""
    header = ["run", "weights", "test acc", "best val acc", "train s", "total s"]
    body = [
        [
            r["run"],
            "ImageNet" if r["pretrained"] else "random",
            r["test"]["test/acc"],
            max((h.get("val/acc", 0.0) for h in r["history"]), default=0.0),
            round(r["train_seconds"]),
            round(r["total_seconds"]),
        ]
        for r in rows
    ]
    return markdown_table(header, body, right=range(2, 6))


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    rows = []
    for name in args.runs:
        results = run(name, args)
        rows.append({"run": name, **results})
        print(table(rows), flush=True)
    tested = sum(map(sum, rows[0]["confusion_matrix"])) if rows else 0
    print(
        f"\ntested on {tested} images of Fashion-MNIST's t10k; {args.per_class} train images per "
        f"class, {args.size} px, {args.epochs} epochs; {time.perf_counter() - started:.0f} s"
    )
    summary = [{k: r[k] for k in ("run", "pretrained", "test", "train_seconds")} for r in rows]
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
