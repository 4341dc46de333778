"""Evaluate a saved checkpoint on its run's test split, with the run's own config, and explain it:
predictions.csv, per-class table, confusion matrix, ROC, calibration (ECE, reliability diagram),
unknown rejection, flip TTA, Grad-CAM grids."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, open_dict
from torch import nn

from transferlab import __version__
from transferlab.console import print_metrics_table
from transferlab.data.sample_grid import image_grid
from transferlab.data.split_record import check_split, sample_ids
from transferlab.data.transforms import denormalize
from transferlab.errors import ConfigError
from transferlab.evaluation import breakdown, figures
from transferlab.evaluation.calibration import calibration_report, flip_tta, run_temperature
from transferlab.evaluation.cam import cam_overlays
from transferlab.results import write_json
from transferlab.tables import write_csv
from transferlab.training.build import build_trainer
from transferlab.training.callbacks import TestProbabilities
from transferlab.training.checkpoint import LoadedRun, load_run
from transferlab.training.temperature import loader_logits, tempered, val_batch_limit
from transferlab.unknown import conformal_threshold, selective_summary, threshold_for_coverage

log = logging.getLogger(__name__)
EVAL_RESULTS = "eval_results.json"


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Reload the run (``load_run``), test it once on its test split, write the report.

    Every probability in the report is ``softmax(logits / T)`` with the run's temperature, as
    predict, serve and the ONNX file answer; the test metrics (argmax) do not depend on T.
    """
    check_options(cfg)
    run = load_run(cfg.ckpt_path, cfg.get("overrides"), cfg.paths)
    exp, trainer, metrics, (raw, labels) = run_test_pass(cfg, run)
    temperature, source = run_temperature(cfg, run, exp.datamodule)
    probs = tempered(raw, temperature)
    limit = run.cfg.trainer.get("limit_val_batches")  # the validation the run itself used
    threshold, chosen_on = unknown_threshold(
        cfg.unknown, exp.module.net, exp.datamodule, temperature, limit
    )
    correct = probs.argmax(axis=1) == labels
    unknown = selective_summary(probs.max(axis=1), correct, threshold)
    results = {
        "checkpoint": str(run.ckpt_path),
        "transferlab_version": __version__,
        "test": metrics,
        "num_test": len(labels),
        "confusion_matrix": exp.module.confusion_matrix,
        "classes": run.classes,
        "unknown": {**unknown, "chosen_on": chosen_on},
    }
    if cfg.get("tta"):
        loader = exp.datamodule.test_dataloader()
        results["tta"] = flip_tta(exp.module.net, loader, probs, labels, temperature)
    if trainer.is_global_zero:
        output_dir = Path(cfg.paths.output_dir)
        results["calibration"] = calibration_report(raw, labels, temperature, source, output_dir)
        results.update(write_report(cfg, exp, probs, labels, results, output_dir))
        write_json(output_dir / EVAL_RESULTS, results)
        publish(trainer.loggers, output_dir, results)
        print_metrics_table(f"eval of {run.ckpt_path.name}", summary_metrics(results))
        log.info("eval report written to %s", output_dir)
    return results


def run_test_pass(cfg: DictConfig, run: LoadedRun):
    """The run tested once on one device; returns (experiment, trainer, test metrics,
    (probabilities, labels) the metrics were computed from)."""
    exp = run.experiment()
    exp.datamodule.prepare_data()
    exp.datamodule.setup("test")
    check_split(exp.datamodule, run.ckpt_path.parent.parent, write=False)  # the data it trained on?
    run_cfg = run.cfg
    if cfg.get("logger") is not None:  # eval.py logger=wandb; otherwise the run's loggers
        with open_dict(run_cfg):
            run_cfg.logger = cfg.logger
    # one device: every test sample is seen exactly once (DDP samplers pad with duplicates)
    trainer = build_trainer(run_cfg, devices=1, num_nodes=1, strategy="auto")
    collector = TestProbabilities()
    trainer.callbacks.append(collector)
    tested = trainer.test(exp.module, datamodule=exp.datamodule, verbose=False)
    metrics = {k: float(v) for k, v in tested[0].items()}
    return exp, trainer, metrics, collector.arrays()


def check_options(cfg: DictConfig) -> None:
    """Refuse eval options that contradict each other before anything is built."""
    if cfg.get("tta") not in (None, "flip"):
        raise ConfigError(
            f"tta={cfg.tta}: unknown test-time augmentation; use tta=flip or tta=null"
        )
    if cfg.unknown.get("alpha") is not None and cfg.unknown.get("coverage") is not None:
        raise ConfigError(
            "unknown.alpha and unknown.coverage both choose the threshold; set one of them"
        )


def unknown_threshold(
    unknown: DictConfig,
    net: nn.Module,
    datamodule,
    temperature: float = 1.0,
    limit_val_batches: int | float | None = None,
) -> tuple[float, str]:
    """The configured threshold, or one chosen on the validation split: with the conformal
    guarantee for ``unknown.alpha``, or keeping a share ``unknown.coverage`` of it."""
    alpha, coverage = unknown.get("alpha"), unknown.get("coverage")
    if alpha is None and coverage is None:
        return float(unknown.threshold), "config"
    loader = datamodule.val_dataloader()
    limit = val_batch_limit(limit_val_batches, loader)
    probs, labels = loader_probabilities(net, loader, temperature, limit)
    if alpha is not None:
        threshold = conformal_threshold(probs.max(axis=1), probs.argmax(axis=1) == labels, alpha)
        log.info("unknown threshold %.4f: wrong answers at most %s of the time", threshold, alpha)
        return threshold, f"conformal alpha {alpha} on val (n={len(labels)})"
    threshold = threshold_for_coverage(probs.max(axis=1), float(coverage))
    log.info("unknown threshold %.4f keeps %.0f%% of validation", threshold, 100 * coverage)
    return threshold, f"val coverage {coverage}"


def loader_probabilities(
    net: nn.Module, loader, temperature: float = 1.0, max_batches: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Softmax probabilities of logits / T and labels for the (image, label) batches of ``loader``."""
    logits, labels = loader_logits(net, loader, max_batches=max_batches)
    return (logits / temperature).softmax(dim=1).numpy(), labels.numpy()


def write_report(cfg: DictConfig, exp, probs, labels, results, output_dir: Path) -> dict[str, Any]:
    """Every artefact from the one pass of ``probs``; returns what joins eval_results.json."""
    classes, test_set = exp.datamodule.classes, exp.datamodule.test_set
    threshold = results["unknown"]["threshold"]
    ids = sample_ids(test_set)[: len(labels)]  # the test pass reads the view in order
    rows = breakdown.prediction_rows(probs, labels, classes, ids, threshold)
    write_csv(rows, output_dir / "predictions.csv")
    per_class = breakdown.per_class_rows(probs, labels, classes)
    write_csv(per_class, output_dir / "per_class.csv")
    breakdown.write_markdown(per_class, output_dir / "per_class.md")
    figures.plot_confusion_matrix(
        np.asarray(results["confusion_matrix"]), classes, output_dir / "confusion_matrix.png"
    )
    curves, auc = breakdown.roc_curves(probs, labels, len(classes))
    figures.plot_roc(curves, auc, classes, output_dir / "roc.png")
    wrong = breakdown.confidently_wrong(probs, labels, int(cfg.report.num_wrong))
    if len(wrong):
        batch = torch.stack([test_set[int(i)][0] for i in wrong])
        image_grid(
            list(denormalize(batch, exp.input)),
            _captions(wrong, probs, labels, classes),
            output_dir / "most_confident_wrong.png",
        )
    cams = write_cam_grids(cfg.cam, exp, probs, labels, output_dir)
    return {
        "per_class": {r["class"]: {k: v for k, v in r.items() if k != "class"} for r in per_class},
        "roc_auc": dict(zip(classes, auc, strict=True)),
        "most_confident_wrong": [int(i) for i in wrong],
        "cam_grids": cams,
    }


def write_cam_grids(cam_cfg, exp, probs, labels, output_dir) -> list[str]:
    """Grad-CAM overlays for the first ``cam.num_images`` test images, ``cam.per_grid`` a PNG."""
    test_set, net = exp.datamodule.test_set, exp.module.net
    count = min(int(cam_cfg.num_images), len(labels))
    per_grid = max(1, int(cam_cfg.per_grid))
    written = []
    for start in range(0, count, per_grid):
        picked = np.arange(start, min(start + per_grid, count))
        batch = torch.stack([test_set[int(i)][0] for i in picked])
        targets = probs[picked].argmax(axis=1)
        overlays = cam_overlays(net, batch, exp.input, targets, cam_cfg.get("target_layer"))
        path = output_dir / f"cam_{start // per_grid:02d}.png"
        image_grid(overlays, _captions(picked, probs, labels, exp.datamodule.classes), path)
        written.append(path.name)
    return written


def _captions(indices, probs, labels, classes) -> list[str]:
    return [
        f"#{i} true: {classes[labels[i]]}\npred: {classes[probs[i].argmax()]} ({probs[i].max():.2f})"
        for i in indices
    ]


def summary_metrics(results: dict[str, Any]) -> dict[str, float]:
    """The test metrics with the calibration, unknown and TTA numbers, for the console and W&B."""
    metrics = dict(results["test"])
    for section, keys in (
        ("calibration", ("temperature", "ece_before", "ece_after")),
        ("unknown", ("threshold", "coverage", "accepted_accuracy")),
        ("tta", ("acc", "acc_tta")),
    ):
        values = results.get(section) or {}
        metrics |= {f"{section}/{k}": float(values[k]) for k in keys if values.get(k) is not None}
    return metrics


def publish(loggers, output_dir: Path, results: dict[str, Any]) -> None:
    """Send the figures, the per-class table and the unknown summary to W&B when it logs."""
    from lightning.pytorch.loggers import WandbLogger

    for logger in loggers:
        if not isinstance(logger, WandbLogger):
            continue
        for png in sorted(output_dir.glob("*.png")):
            logger.log_image(key=f"eval/{png.stem}", images=[str(png)])
        rows = [{"class": k, **v} for k, v in results["per_class"].items()]
        logger.log_table(
            key="eval/per_class", columns=list(rows[0]), data=[list(r.values()) for r in rows]
        )
        logger.log_metrics(summary_metrics(results))
        logger.experiment.save(
            str(output_dir / "predictions.csv"), base_path=str(output_dir), policy="now"
        )
        logger.experiment.finish()
