"""Fair tuning: each arm of an experiment gets its own search, then its seeds run at its best values.

An arm is one cell of the experiment's sweep without the seed (e.g. model=efficientnet_lite1
pretrained=false). Its search is ``train.py -m hparams_search=optuna`` in ``<root>/tune/<arm>``,
whose Optuna study (optuna.db) says which trials are done, so a killed search resumes where it
stopped. The best values go to ``<root>/tune/<arm>/best_params.json`` and the seeds run in
``<root>/seeds/<arm>/<n>``, one folder for every arm, which the sweep report compares.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig

from transferlab.errors import ConfigError
from transferlab.results import write_json

BEST_PARAMS = "best_params.json"
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL)


@dataclass
class Plan:
    """What ``train.py -m <overrides>`` would sweep, split into arms and seeds."""

    repo: Path  # where train.py and conf/ are
    arms: list[dict[str, str]]  # the swept choices of each cell, seed aside
    seeds: list[str]
    fixed: list[str] = field(default_factory=list)  # the other overrides, as given

    def name(self, arm: dict[str, str]) -> str:
        """A folder name made of what varies between arms, e.g. model_resnet18-pretrained_false."""
        varying = [k for k in arm if len({a[k] for a in self.arms}) > 1]
        return "-".join(f"{k.rsplit('.', 1)[-1]}_{arm[k]}".lower() for k in varying) or "arm"


def compose_train(repo: Path, overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(repo / "conf"), version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=True)


def plan(repo: Path, overrides: list[str]) -> Plan:
    """The experiment's hydra.sweeper.params, command-line values in their place as Hydra's
    basic sweeper puts them; every swept key but the seed makes arms."""
    cfg = compose_train(repo, overrides)
    params = [f"{k}={v}" for k, v in (cfg.hydra.sweeper.get("params") or {}).items()]
    swept: dict[str, list[str]] = {}
    fixed: dict[str, str] = {}
    for override in OverridesParser.create().parse_overrides([*params, *overrides]):
        key = override.get_key_element()
        swept.pop(key, None)
        fixed.pop(key, None)
        if override.is_interval_sweep():
            raise ConfigError(f"{key}: an interval is a search space; give tune_arms choices")
        if override.is_sweep_override():
            swept[key] = list(override.sweep_string_iterator())
        else:
            fixed[key] = override.input_line
    seed = fixed.pop("seed", None)
    seeds = swept.pop("seed", None) or [seed.split("=", 1)[1] if seed else str(cfg.seed)]
    arms = [dict(zip(swept, combo, strict=True)) for combo in itertools.product(*swept.values())]
    return Plan(repo, arms, seeds, list(fixed.values()))


def open_study(plan: Plan, sweep_dir: Path) -> optuna.Study | None:
    """The arm's stored study, with trials that a killed search left running marked failed."""
    if not (sweep_dir / "optuna.db").is_file():
        return None
    hydra = compose_train(plan.repo, ["hparams_search=optuna", f"hydra.sweep.dir={sweep_dir}"])
    study = optuna.load_study(
        study_name=hydra.hydra.sweeper.study_name, storage=hydra.hydra.sweeper.storage
    )
    for trial in study.get_trials(states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
    return study


def tune(plan: Plan, arm: dict[str, str], trials: int, sweep_dir: Path) -> dict[str, Any]:
    """Search the arm until ``trials`` trials have finished; write and return its best values."""
    study = open_study(plan, sweep_dir)
    done = len(study.get_trials(states=FINISHED)) if study else 0
    if done < trials:
        args = ["hparams_search=optuna", f"seed={plan.seeds[0]}", f"hydra.sweep.dir={sweep_dir}"]
        args.append(f"hydra.sweeper.n_trials={trials - done}")
        if done:  # Hydra numbers a rerun's jobs from 0 again: keep the earlier trials' folders
            args.append(f"hydra.sweep.subdir=resumed_at_{done}/${{hydra.job.num}}")
        train_multirun(plan, arm, args)
        study = open_study(plan, sweep_dir)
    trials_run = study.trials if study else []
    complete = [t for t in trials_run if t.state == optuna.trial.TrialState.COMPLETE]
    best = max(complete, key=lambda t: t.value) if complete else None
    record = {
        "arm": arm,
        "params": best.params if best else None,
        "best_value": best.value if best else None,
        "best_trial": best.number if best else None,
        "objective": "best validation score of the checkpoint's monitor (results.json best_val)",
        "trials": {
            state.name.lower(): sum(t.state == state for t in trials_run)
            for state in optuna.trial.TrialState
        },
        "study": str(sweep_dir / "optuna.db"),
    }
    write_json(sweep_dir / BEST_PARAMS, record)
    return record


def run_seeds(plan: Plan, arm: dict[str, str], params: dict[str, Any], root: Path) -> None:
    """The arm's seeds at its tuned values, in <root>/seeds/<arm>/<n>; finished ones are kept."""
    args = [f"{key}={value!r}" for key, value in params.items()]
    args += [f"seed={','.join(plan.seeds)}", f"hydra.sweep.dir={root / 'seeds'}"]
    args += [f"hydra.sweep.subdir={plan.name(arm)}/${{hydra.job.num}}", "skip_done=true"]
    train_multirun(plan, arm, args)


def train_multirun(plan: Plan, arm: dict[str, str], args: list[str]) -> None:
    """train.py -m in its own process: each search and each arm's seeds is a Hydra multirun.
    Its exit code is not checked: the study and the runs' results.json say what finished."""
    overrides = [*plan.fixed, *(f"{k}={v}" for k, v in arm.items()), *args]
    subprocess.run([sys.executable, str(plan.repo / "train.py"), "-m", *overrides], check=False)


def tune_arms(repo: Path, overrides: list[str], trials: int, root: Path) -> int:
    """Tune every arm, then run its seeds; 1 when an arm had no completed trial, else 0."""
    plan_ = plan(repo, overrides)
    untuned = 0
    for arm in plan_.arms:
        record = tune(plan_, arm, trials, root / "tune" / plan_.name(arm))
        if record["params"] is None:
            print(f"{plan_.name(arm)}: no trial completed; its seeds are not run", file=sys.stderr)
            untuned += 1
            continue
        run_seeds(plan_, arm, record["params"], root)
    return 1 if untuned else 0
