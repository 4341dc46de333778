"""A linear probe on cached features against the same probe through the Trainer path: end-to-end
wall time of `python train.py finetune=linear_probe augment=none ...` (subprocesses, as a user
runs it) with a cold cache, a warm cache and `features.cache=false`, and the test accuracy of
each, in one run so the ratios share the machine's state.

Two ratios: per command (the process's wall time, its imports and Hydra's start included) and
per run (results.json's total_seconds: seed to results written, cache reads, fit, test and
calibration included; what each job of an in-process sweep costs once the imports are paid).

    PYTHONPATH=. nice -n 10 python bench/probe_cache.py             # 300 images per class
    PYTHONPATH=. python bench/probe_cache.py --per-class 300 all    # all: the whole training split
    PYTHONPATH=. python bench/probe_cache.py --seeds 5              # + a 5-seed sweep of each path

``--seeds N`` adds, per size, one ``train.py -m seed=1..N`` command per path (warm cache): the
sweep a user runs for error bars, its imports paid once.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from datetime import date
from pathlib import Path

from bench.common import ROOT, machine, merge_by, print_table, run_sweep, run_train

RESULTS = ROOT / "bench" / "results" / "probe_cache.json"


def run(name: str, overrides: list[str], work: Path) -> dict:
    """One train.py run in ``work/name``: the command's wall seconds, the run's own seconds
    (results.json) and its test accuracy."""
    results = run_train(name, overrides, work)
    return {
        "seconds": results["seconds"],
        "run_seconds": results["total_seconds"],
        "test_acc": results["test"]["test/acc"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-class", nargs="+", default=["300"], help="numbers, or 'all'")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=0, help="also a sweep of this many seeds")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
    args = parser.parse_args()
    rows, records = [], []
    for size in args.per_class:
        work = Path(tempfile.mkdtemp(prefix="probe-cache-"))
        per_class = "null" if size == "all" else size
        base = [
            "finetune=linear_probe",
            "augment=none",
            f"data.train_per_class={per_class}",
            f"trainer.max_epochs={args.epochs}",
            "optimizer.lr=3e-3",  # head only: bench/finetune.py
            f"features.cache_dir={work / 'cache'}",
            *args.overrides,
        ]
        trainer = run("trainer", [*base, "features.cache=false"], work)
        cold = run("cold", base, work)
        warm = run("warm", base, work)
        record = {"per_class": size, "trainer": trainer, "cold": cold, "warm": warm}
        if args.seeds:
            record["sweep"] = sweeps(base, args.seeds, work)
        shutil.rmtree(work, ignore_errors=True)
        records.append(record)
        rows.append(
            [
                str(size),
                f"{trainer['seconds']:.0f}",
                f"{cold['seconds']:.0f}",
                f"{warm['seconds']:.1f}",
                f"{warm['seconds'] - warm['run_seconds']:.1f}",
                f"{trainer['seconds'] / warm['seconds']:.1f}x",
                f"{trainer['run_seconds'] / warm['run_seconds']:.1f}x",
                f"{cold['seconds'] / trainer['seconds']:.2f}x",
                f"{trainer['test_acc']:.4f}",
                f"{warm['test_acc']:.4f}",
                f"{100 * (warm['test_acc'] - trainer['test_acc']):+.2f}",
            ]
        )
    columns = [
        "per class",
        "trainer s",
        "cold s",
        "warm s",
        "of which start s",
        "trainer / warm, command",
        "trainer / warm, run",
        "cold / trainer",
        "acc trainer",
        "acc cached",
        "points",
    ]
    print_table(
        f"linear probe, {args.epochs} epochs: cached features vs the Trainer path", columns, rows
    )
    if args.seeds:
        print_sweeps(records, args.seeds)
    merge_rows(records, args.epochs)


def sweeps(base: list[str], seeds: int, work: Path) -> dict:
    """Both paths as one ``train.py -m seed=1..N`` command each (the cache already warm)."""
    seed_list = "seed=" + ",".join(str(s) for s in range(1, seeds + 1))
    out = {"seeds": seeds}
    for name, extra in (("trainer", ["features.cache=false"]), ("warm", [])):
        swept = run_sweep(f"sweep-{name}", [*base, *extra, seed_list], work)
        accs = [job["test"]["test/acc"] for job in swept["jobs"]]
        out[name] = {"seconds": swept["seconds"], "test_acc": accs}
    return out


def print_sweeps(records: list[dict], seeds: int) -> None:
    rows = []
    for record in records:
        trainer, warm = record["sweep"]["trainer"], record["sweep"]["warm"]
        gaps = [100 * (w - t) for t, w in zip(trainer["test_acc"], warm["test_acc"], strict=True)]
        rows.append(
            [
                str(record["per_class"]),
                f"{trainer['seconds']:.0f}",
                f"{warm['seconds']:.1f}",
                f"{trainer['seconds'] / warm['seconds']:.1f}x",
                f"{max(gaps, key=abs):+.2f}",
            ]
        )
    columns = ["per class", "trainer s", "warm s", "trainer / warm", "largest gap, points"]
    print_table(f"a {seeds}-seed sweep (train.py -m), one command per path", columns, rows)


def merge_rows(records: list[dict], epochs: int) -> None:
    """Rows replace the file's rows of the same size; each row keeps its own date and machine."""
    stamp = {"date": date.today().isoformat(), "machine": machine(), "epochs": epochs}
    kept = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    old = [{k: kept[k] for k in stamp if k in kept} | r for r in kept.get("rows", [])]
    rows = merge_by("per_class", old, [stamp | r for r in records])
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
