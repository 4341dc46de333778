"""Full Fashion-MNIST: test accuracy against wall time, and the ablation that chose the recipe.

Every row is `python train.py ...` run as a user runs it (a subprocess), trained on the whole
training split and tested with its best checkpoint on the whole official test set. The rows run
with `callbacks=[default,test_clock]`, which scores the test set at fixed wall-clock points
(never used to pick the checkpoint): the time-to-accuracy curve.

    PYTHONPATH=. python bench/full_data.py ablation     # ~45 min: one change at a time
    PYTHONPATH=. python bench/full_data.py rows         # ~60 min: the full-data rows
    PYTHONPATH=. python bench/full_data.py rows --only best_10min best_10min_scratch
    PYTHONPATH=. python bench/full_data.py report       # tables + plot from the JSON alone
    PYTHONPATH=. python bench/full_data.py gpu          # the fmnist_gpu row (bench/gpu.sh)

Rows are merged by name into bench/results/full_data.json (ablation: full_data_ablation.json), so
a row can be rerun alone; `report` prints the tables and draws docs/time_to_accuracy.png.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.common import ROOT, machine, merge_by, print_table, run_train
from transferlab.data.sample_grid import save_figure

RESULTS = ROOT / "bench" / "results"
PLOT = ROOT / "docs" / "time_to_accuracy.png"
FULL = ["data.train_per_class=null"]

# name: (what it is, overrides). The budget (epochs) is part of each recipe; the clock scores the
# test set every 2 minutes of training (30 s for the small CNN).
CLOCK = ["callbacks=[default,test_clock]", "callbacks.test_clock.every_seconds=120"]
BEST = ["experiment=fmnist_full_cpu", *CLOCK]
BEST_10MIN = [*BEST, "trainer.max_epochs=${budget_10min}"]
ROWS: dict[str, tuple[str, list[str]]] = {
    "best": ("experiment=fmnist_full_cpu: the 30-minute recipe", BEST),
    "best_10min": ("the same recipe with the 10-minute budget", BEST_10MIN),
    "best_10min_scratch": ("the same from scratch", [*BEST_10MIN, "pretrained=false"]),
    "small_cnn_scratch": (
        "the small CNN from scratch, 28 px, on-device batches",
        [
            *BEST,
            "model=small_cnn",
            "pretrained=false",
            "input.size=28",
            "trainer.max_epochs=10",
            "callbacks.test_clock.every_seconds=30",
        ],
    ),
    "lite0_defaults": (
        "today's default recipe (python train.py) on all the data, 1 epoch",
        [*FULL, "trainer.max_epochs=1", *CLOCK],
    ),
}

# The ablation: one change at a time from today's default recipe, at its fixed budget (1,000
# images per class, 2 epochs), so accuracy differences are the change's, and img/s says its cost.
ABLATION_BASE = ["data.train_per_class=1000", "trainer.max_epochs=2"]
ABLATION: dict[str, tuple[list[str], dict[str, str]]] = {
    "default recipe (64 px)": ([], {}),
    "default recipe, seed 2": (["seed=2"], {}),
    "input 32 px": (["input.size=32"], {}),
    "input 48 px": (["input.size=48"], {}),
    "data.on_device=true": (["data.on_device=true", "data.num_workers=0"], {}),
    "scheduler=onecycle": (["scheduler=onecycle"], {}),
    "scheduler=cosine": (["scheduler=cosine"], {}),
    "label smoothing 0.1": (["module.label_smoothing=0.1"], {}),
    "EMA 0.999": (["callbacks=[default,ema]"], {}),
    "mixup 0.2": (["mixup=mixup"], {}),
    "augment=standard": (["augment=standard"], {}),
    "no channels_last": (["~callbacks.channels_last"], {}),
    "batch 128": (["data.batch_size=128"], {}),
    "1 thread": ([], {"OMP_NUM_THREADS": "1"}),
}

QUICK = [  # `--quick`: tiny sizes, to check the script end to end
    "data.train_per_class=20",
    "input.size=32",
    "trainer.max_epochs=1",
    "callbacks.test_clock.every_seconds=1",
]


def record(name: str, about: str, overrides: list[str], results: dict[str, Any], work: Path):
    """One row as the JSON keeps it."""
    curve_file = work / name / "test_clock.json"
    curve = json.loads(curve_file.read_text()) if curve_file.is_file() else []
    return {
        "name": name,
        "about": about,
        "overrides": overrides,
        "model": results["model"],
        "pretrained": results["pretrained"],
        "test_acc": round(results["test"]["test/acc"], 4),
        "best_val": results["best_val"]["value"] if results.get("best_val") else None,
        "epochs": len(results["history"]),
        # the command's wall time less the clock's own test passes: what the run costs without it
        "minutes": round((results["seconds"] - sum(p["eval_seconds"] for p in curve)) / 60, 2),
        "train_minutes": round(results["train_seconds"] / 60, 2),  # the clock's passes left out
        "images_per_second": round(results["images_per_second"]),
        "peak_rss_mb": results["peak_rss_mb"],
        "peak_gpu_mb": results.get("peak_gpu_mb"),
        "splits": results["splits"],
        "curve": curve,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "commit": _commit(),
    }


def _commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True)
    return out.stdout.decode().strip()


def merge(path: Path, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` replace the file's rows of the same name; the others stay, in order."""
    kept = json.loads(path.read_text()) if path.is_file() else []
    merged = merge_by("name", kept, rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(merged, indent=1) + "\n")
    return merged


def run_rows(names: list[str], extra: list[str], budget_10min: int, work: Path, out: Path) -> None:
    for name in names:
        about, overrides = ROWS[name]
        overrides = [o.replace("${budget_10min}", str(budget_10min)) for o in overrides]
        _run_one(name, name, about, overrides, extra, {}, work, out)


def run_ablation(extra: list[str], work: Path, out: Path) -> None:
    for i, (name, (overrides, env)) in enumerate(ABLATION.items()):
        overrides = [*ABLATION_BASE, *overrides]
        _run_one(name, f"a{i:02d}", "ablation", overrides, extra, env, work, out)


def _run_one(name, run_name, about, overrides, extra, env, work: Path, out: Path) -> None:
    """Run one row and merge it into ``out`` at once: a later row's failure loses nothing."""
    print(f"{name}: {' '.join(overrides + extra)} {env or ''}", flush=True)
    try:
        results = run_train(run_name, [*overrides, *extra], work, env)
    except SystemExit as failed:
        print(f"  FAILED: {failed}", flush=True)
        return
    shown = [*overrides, *(f"{k}={v}" for k, v in env.items())]
    row = {**record(run_name, about, shown, results, work), "name": name}
    merge(out, [row])
    print(
        f"  test acc {row['test_acc']:.4f} in {row['minutes']:.1f} min, "
        f"{row['images_per_second']} img/s",
        flush=True,
    )


def rows_table(rows: list[dict[str, Any]]) -> None:
    columns = ["row", "weights", "test acc", "epochs", "minutes", "img/s", "peak RSS MB", "GPU MB"]
    print_table(
        "Full Fashion-MNIST (best checkpoint on the 10k test set)",
        columns,
        [
            [
                r["name"],
                "ImageNet" if r["pretrained"] else "random",
                f"{r['test_acc']:.4f}",
                str(r["epochs"]),
                f"{r['minutes']:.1f}",
                str(r["images_per_second"]),
                str(r["peak_rss_mb"]),
                "-" if r["peak_gpu_mb"] is None else f"{r['peak_gpu_mb']:.0f}",
            ]
            for r in rows
        ],
    )


def ablation_table(rows: list[dict[str, Any]]) -> None:
    base = rows[0]
    print_table(
        "Ablation: one change from the default recipe (1,000 images/class, 2 epochs)",
        ["change", "test acc", "points", "img/s", "speed", "minutes"],
        [
            [
                r["name"],
                f"{r['test_acc']:.4f}",
                f"{100 * (r['test_acc'] - base['test_acc']):+.2f}",
                str(r["images_per_second"]),
                f"{r['images_per_second'] / base['images_per_second']:.2f}x",
                f"{r['minutes']:.1f}",
            ]
            for r in rows
        ],
    )


def plot(rows: list[dict[str, Any]], path: Path) -> Path:
    """Test accuracy against training minutes, one line per row with a curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for r in rows:
        if not r["curve"]:
            continue
        minutes = [p["seconds"] / 60 for p in r["curve"]]
        accuracy = [p["test_acc"] for p in r["curve"]]
        style = "-" if r["pretrained"] else "--"
        ax.plot(minutes, accuracy, style, marker=".", label=f"{r['name']} ({r['test_acc']:.3f})")
    for goal, minutes in ((0.94, 10), (0.95, 30)):
        ax.axhline(goal, color="grey", lw=0.6, ls=":")
        ax.axvline(minutes, color="grey", lw=0.6, ls=":")
    lowest = min((p["test_acc"] for r in rows for p in r["curve"]), default=0.8)
    ax.set_ylim(max(0.5, lowest - 0.02), 0.96)
    ax.set_xlabel("training wall time (minutes, 2 CPU cores)")
    ax.set_ylabel("test accuracy (10k official test set)")
    ax.set_title("Full Fashion-MNIST: time to accuracy (solid: ImageNet weights, dashed: scratch)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["rows", "ablation", "report", "gpu"])
    parser.add_argument("--only", nargs="+", choices=list(ROWS), help="rows: just these")
    parser.add_argument("--budget-10min", type=int, default=1, help="epochs of the 10-min rows")
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of the JSON files")
    parser.add_argument("--plot", type=Path, default=PLOT)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the script")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
    args = parser.parse_intermixed_args()  # overrides may follow --only's names
    extra = [*(QUICK if args.quick else []), *args.overrides]
    rows_file = args.results / "full_data.json"
    ablation_file = args.results / "full_data_ablation.json"
    work = Path(tempfile.mkdtemp(prefix="full-data-"))
    print(f"runs and logs in {work}", flush=True)
    if args.what == "rows":
        run_rows(args.only or list(ROWS), extra, args.budget_10min, work, rows_file)
    elif args.what == "ablation":
        run_ablation([e for e in extra if "test_clock" not in e], work, ablation_file)
    elif args.what == "gpu":
        gpu = ["experiment=fmnist_gpu", *CLOCK, "callbacks.test_clock.every_seconds=10"]
        ROWS["fmnist_gpu"] = ("experiment=fmnist_gpu on one GPU", gpu)
        run_rows(["fmnist_gpu"], extra, args.budget_10min, work, rows_file)
    if ablation_file.is_file() and args.what in ("ablation", "report"):
        ablation_table(json.loads(ablation_file.read_text()))
    if rows_file.is_file() and args.what != "ablation":
        rows = json.loads(rows_file.read_text())
        rows_table(rows)
        print(f"plot: {plot(rows, args.plot)}")


if __name__ == "__main__":
    main()
