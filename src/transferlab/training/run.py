"""One training run: fit, test the best checkpoint, write results.json and test_predictions.npz."""

from __future__ import annotations

import logging
import os
import time
import traceback
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from transferlab import __version__
from transferlab.console import print_config_tree, print_metrics_table
from transferlab.data.split_record import sample_ids
from transferlab.errors import root_cause
from transferlab.features.audit_report import check_leakage
from transferlab.features.probe_data import feature_datamodule, probes_on_features
from transferlab.predictions import write_predictions
from transferlab.results import RESULTS_FILE, write_json
from transferlab.training.build import build_experiment, build_trainer
from transferlab.training.callbacks import RunStats, TestProbabilities
from transferlab.training.lr_finder import find_learning_rate
from transferlab.training.memory import peak_memory
from transferlab.training.rundir import (
    LAST_CHECKPOINT,
    check_output_dir,
    finished_results,
    resume_checkpoint,
)
from transferlab.training.temperature import calibrate_best
from transferlab.training.validate import validate

log = logging.getLogger(__name__)


def train(cfg: DictConfig, choices: dict[str, str] | None = None) -> dict[str, Any]:
    """Run the experiment ``cfg``; ``choices`` are the config-group options it was composed from."""
    output_dir = Path(cfg.paths.output_dir)
    summary = run_summary(cfg, choices or {})
    done = finished_results(output_dir) if cfg.get("skip_done") or cfg.get("resume") else None
    if done is not None:
        log.info("%s already holds an ok %s: not training again", output_dir, RESULTS_FILE)
        return done
    validate(cfg)
    check_output_dir(output_dir, cfg.get("min_free_mb") or 0)
    try:
        results = _fit_and_test(cfg, output_dir, summary)
    except BaseException as err:
        if isinstance(err, SIGTERMException):  # a SystemExit, which submitit would not report
            err = Terminated(TERMINATED)
        if not isinstance(err, KeyboardInterrupt):
            failed = {**summary, "status": "failed", "error": reason(err)}
            failed["traceback"] = traceback.format_exc(limit=8)
            if (output_dir / LAST_CHECKPOINT).is_file():  # the last good one: never poisoned
                failed["last_checkpoint"] = str(output_dir / LAST_CHECKPOINT)
            write_json(output_dir / RESULTS_FILE, failed)
        raise err
    return results


TERMINATED = (
    "SIGTERM while training (scancel, preemption or the time limit); "
    "rerun with resume=true to continue from last.ckpt"
)


class Terminated(RuntimeError):
    """The scheduler stopped the job. Lightning's SIGTERMException is a SystemExit: in a sweep it
    would end the job without a result for submitit to collect, and the sweep would wait on it."""


def cluster_job() -> dict[str, str]:
    """The SLURM job running this run and, under submitit, its log files: a sweep report links
    them for a failed job. Empty outside a scheduler."""
    if "SUBMITIT_FOLDER" in os.environ:  # set by submitit in the job's process
        import submitit

        env = submitit.JobEnvironment()
        paths = env.paths
        return {
            "cluster": env.cluster,
            "job_id": env.job_id,
            "stdout": str(paths.stdout),
            "stderr": str(paths.stderr),
        }
    if "SLURM_JOB_ID" in os.environ:  # sbatch or srun without submitit
        return {"cluster": "slurm", "job_id": os.environ["SLURM_JOB_ID"]}
    return {}


def run_summary(cfg: DictConfig, choices: dict[str, str]) -> dict[str, Any]:
    """The identifying fields of a run, the keys reports group by."""
    return {
        "transferlab_version": __version__,
        "model": choices.get("model", cfg.model.get("name")),
        "backbone": cfg.model.get("name"),
        "data": choices.get("data", cfg.data.get("name")),
        "pretrained": bool(cfg.pretrained),
        "seed": cfg.seed,
        "optimizer": choices.get("optimizer"),
        "scheduler": choices.get("scheduler"),
        "augment": choices.get("augment"),
        "finetune": choices.get("finetune"),
        "train_per_class": cfg.data.get("train_per_class"),
        "cluster_job": cluster_job(),
    }


def _fit_and_test(cfg: DictConfig, output_dir: Path, summary: dict[str, Any]) -> dict[str, Any]:
    L.seed_everything(cfg.seed, workers=True)
    started = time.perf_counter()
    check_leakage(cfg)  # audit.leakage=warn|error: before anything is fitted
    exp = build_experiment(cfg)
    if probes_on_features(cfg, summary):
        exp.datamodule = feature_datamodule(cfg)
    trainer = build_trainer(cfg)
    if trainer.is_global_zero:
        print_config_tree(cfg)
    for logger in trainer.loggers:
        logger.log_hyperparams(flat_config(cfg, summary))
    ckpt_path = resume_checkpoint(cfg, output_dir)
    tune = dict(cfg.get("tune") or {})
    found_lr = None
    if tune.pop("lr_find", False) and ckpt_path is None:
        found_lr = find_learning_rate(trainer, exp.module, exp.datamodule, **tune)
    log.info("backbone %s: weights from %s", cfg.model.get("name"), exp.module.net.weights_source)
    # weights_only: a checkpoint file is data, never code (Lightning's default unpickles)
    trainer.fit(exp.module, datamodule=exp.datamodule, ckpt_path=ckpt_path, weights_only=True)
    checkpoint = next(
        (c for c in trainer.callbacks if isinstance(c, ModelCheckpoint) and c.monitor), None
    )
    best = checkpoint.best_model_path if checkpoint else ""
    # read before test(): loading best.ckpt also rolls RunStats back to that epoch's state
    run_stats = next(c for c in trainer.callbacks if isinstance(c, RunStats))
    stats = {**run_stats.state_dict(), "images_per_second": run_stats.images_per_second}
    stopped, best_val = stopped_epoch(trainer), best_score(checkpoint)  # also before test()
    test_probs = TestProbabilities()
    trainer.callbacks.append(test_probs)
    tested = trainer.test(
        exp.module,
        datamodule=exp.datamodule,
        ckpt_path=best or None,
        verbose=False,
        weights_only=True,
    )
    test_metrics = {k: float(v) for k, v in tested[0].items()} if tested else {}
    calibration = calibrate_best(trainer, exp.module, exp.datamodule, best)  # T, on val
    results = {
        **summary,
        "status": "ok",
        "test": test_metrics,
        "confusion_matrix": getattr(exp.module, "confusion_matrix", None),
        "classes": exp.datamodule.classes,
        "splits": exp.datamodule.split_info,
        "train_images_per_class": exp.datamodule.train_counts,  # after train_per_class's cap
        "weights": getattr(exp.module.net, "weights_source", None),
        "input": exp.input,
        "epochs": trainer.current_epoch,
        "stopped_epoch": stopped,
        "best_val": best_val,
        "best_checkpoint": best,
        "last_checkpoint": str(Path(checkpoint.dirpath) / "last.ckpt") if checkpoint else "",
        "train_seconds": round(stats["train_seconds"], 2),
        "images_per_second": round(stats["images_per_second"], 2),
        "total_seconds": round(time.perf_counter() - started, 2),
        **peak_memory(),
        "history": stats["history"],
        "lr_find": found_lr,
        "calibration": calibration,
        "output_dir": str(output_dir),
    }
    if trainer.is_global_zero:
        probs, labels = test_probs.arrays()
        ids = sample_ids(exp.datamodule.test_set)[: len(labels)]  # the test pass reads in order
        write_predictions(output_dir, ids, labels, probs)  # before results.json says "ok"
        write_json(output_dir / RESULTS_FILE, results)
        print_metrics_table(
            f"test metrics ({summary['model']}, pretrained={summary['pretrained']})", test_metrics
        )
        log.info("results written to %s", output_dir / RESULTS_FILE)
    return results


def stopped_epoch(trainer: L.Trainer) -> int | None:
    """The epoch (numbered as in the history) in which early stopping ended fit; None when fit
    ran to its end or no EarlyStopping callback is configured."""
    stopper = trainer.early_stopping_callback
    if stopper is None or stopper.stopping_reason == EarlyStoppingReason.NOT_STOPPED:
        return None
    return stopper.stopped_epoch


def best_score(checkpoint: ModelCheckpoint | None) -> dict[str, Any] | None:
    """The monitored validation metric's best value, the one best.ckpt holds: what model
    selection and hyper-parameter search go by (never the test split)."""
    if checkpoint is None or checkpoint.best_model_score is None:
        return None
    return {"metric": checkpoint.monitor, "value": float(checkpoint.best_model_score)}


def flat_config(cfg: DictConfig, summary: dict[str, Any]) -> dict[str, Any]:
    """Config as 'group.key' pairs plus the run's identifying fields, for dashboards to filter on."""
    nested = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    flat: dict[str, Any] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(f"{prefix}.{key}" if prefix else str(key), value)
        else:
            flat[prefix] = node

    walk("", {k: v for k, v in nested.items() if k not in ("callbacks", "logger", "paths")})
    return {**flat, **{f"run.{k}": v for k, v in summary.items()}}


def reason(err: BaseException) -> str:
    """'<type>: <message>' of the error that explains a failure (not Hydra's wrapper of it)."""
    err = root_cause(err)
    return f"{type(err).__name__}: {err}"
