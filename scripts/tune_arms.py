"""Tune each arm of an experiment on validation accuracy, then run its seeds at the arm's best values.

    python scripts/tune_arms.py --trials 12 experiment=compare_lite
    python -m transferlab.sweep.report <root>/seeds

Each arm's Optuna study, trial runs and best_params.json are in <root>/tune/<arm>/, its seeds in
<root>/seeds/<arm>/. Run the same command with the same --root to resume a killed study.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

from transferlab.errors import run_or_exit
from transferlab.sweep.tuning import tune_arms

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10, help="finished trials per arm")
    parser.add_argument(
        "--root",
        type=Path,
        default=Path("multirun/tune_arms") / datetime.now().strftime("%Y-%m-%d_%H-%M-%S"),
        help="folder of the whole study (default: multirun/tune_arms/<date>_<time>)",
    )
    parser.add_argument("overrides", nargs="*", help="train.py overrides: experiment=compare_lite")
    args = parser.parse_args(argv)
    return run_or_exit(tune_arms, REPO, args.overrides, args.trials, args.root.resolve())


if __name__ == "__main__":
    sys.exit(main())
