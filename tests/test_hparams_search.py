"""hparams_search=optuna: a real Optuna study in SQLite, maximising the best validation score,
that records a failed trial and goes on, and resumes when run again; tune_arms tunes each arm
and runs its seeds at the arm's best values."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml

from tests.conftest import ROOT, TINY, run_script
from transferlab.results import RESULTS_FILE, read_json
from transferlab.sweep.tuning import BEST_PARAMS, open_study, plan

TRIAL = [
    *TINY,
    "model=small_cnn",
    "pretrained=false",
    "logger=none",
    "trainer.limit_train_batches=2",
]
COMPLETE, FAIL = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL


def load(sweep_dir: Path) -> optuna.Study:
    return optuna.load_study(study_name="hparams", storage=f"sqlite:///{sweep_dir}/optuna.db")


@pytest.mark.slow
def test_study_records_a_failed_trial_goes_on_and_resumes(idx_dir: Path, tmp_path: Path):
    sweep = tmp_path / "sweep"
    data = f"data.search_dirs=[{idx_dir}]"
    # Trial 0 is forced to train_per_class=0, which train.py refuses (a ConfigError); the study
    # lives in the sweep dir, so the three trials are queued in the same database first.
    sweep.mkdir()
    study = optuna.create_study(
        study_name="hparams", storage=f"sqlite:///{sweep}/optuna.db", direction="maximize"
    )
    for per_class in (0, 8, 8):
        study.enqueue_trial(
            {
                "optimizer.lr": 1e-3,
                "optimizer.weight_decay": 1e-4,
                "data.train_per_class": per_class,
            }
        )
    args = [*TRIAL, data, "hparams_search=optuna", f"hydra.sweep.dir={sweep}"]
    searched = [a for a in args if not a.startswith("data.train_per_class")]
    searched.append("data.train_per_class=choice(8,0)")  # searched, not fixed: trial 0 gets 0
    searched.append("hydra.sweeper.n_trials=3")
    first = run_script("train.py", ["-m", *searched], tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "data.train_per_class=0" in first.stderr  # the one-line refusal of trial 0
    trials = load(sweep).trials
    assert [t.state for t in trials] == [FAIL, COMPLETE, COMPLETE]
    for job, trial in ((1, trials[1]), (2, trials[2])):  # the objective: best val, not test
        best_val = read_json(sweep / str(job) / RESULTS_FILE)["best_val"]
        assert best_val["metric"] == "val/acc" and trial.value == best_val["value"]

    again = run_script("train.py", ["-m", *args, "hydra.sweeper.n_trials=1"], tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Using an existing study" in again.stderr
    trials = load(sweep).trials
    assert [t.state for t in trials] == [FAIL, COMPLETE, COMPLETE, COMPLETE]
    assert 1e-5 <= trials[3].params["optimizer.lr"] <= 1e-2  # drawn by the sampler this time
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["best_value"] == max(t.value for t in trials if t.state == COMPLETE)


def test_plan_takes_arms_from_the_experiment_and_the_command_line():
    lite = plan(ROOT, ["experiment=compare_lite"])
    assert len(lite.arms) == 6 and lite.seeds == ["1", "2", "3"]
    assert {a["model"] for a in lite.arms} == {f"efficientnet_lite{n}" for n in range(3)}
    assert lite.name(lite.arms[0]) == "model_efficientnet_lite0-pretrained_true"
    scratch = plan(ROOT, ["experiment=compare_lite", "model=resnet18", "pretrained=false"])
    assert scratch.arms == [{}] and "model=resnet18" in scratch.fixed


def test_a_killed_trial_is_marked_failed_when_the_study_is_reopened(tmp_path: Path):
    study = optuna.create_study(study_name="hparams", storage=f"sqlite:///{tmp_path}/optuna.db")
    study.ask()  # running when the search was killed
    reopened = open_study(plan(ROOT, []), tmp_path)
    assert [t.state for t in reopened.trials] == [FAIL]


@pytest.mark.slow
def test_tune_arms_writes_best_params_and_runs_seeds_at_them(idx_dir: Path, tmp_path: Path):
    root = tmp_path / "study"
    args = ["--trials", "2", "--root", str(root), *TRIAL, f"data.search_dirs=[{idx_dir}]"]
    result = run_script("scripts/tune_arms.py", [*args, "seed=5"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    record = read_json(root / "tune" / "arm" / BEST_PARAMS)
    trials = load(root / "tune" / "arm").trials
    assert record["trials"]["complete"] == 2 == len(trials)
    assert record["best_value"] == max(t.value for t in trials)
    assert set(record["params"]) == {"optimizer.lr", "optimizer.weight_decay"}
    seed_run = root / "seeds" / "arm" / "0"
    overrides = yaml.safe_load((seed_run / ".hydra" / "overrides.yaml").read_text())
    for key, value in record["params"].items():
        assert f"{key}={value!r}" in overrides
    assert "seed=5" in overrides and read_json(seed_run / RESULTS_FILE)["status"] == "ok"
