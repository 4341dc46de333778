"""Bad configs, bad output dirs and changed data are refused before training, in one line each;
two runs with one seed agree exactly."""

from __future__ import annotations

import re
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from tests.conftest import CONF, TINY, compose_train, run_script, write_idx
from transferlab.data.split_record import SPLIT_FILE, DataChangedError, check_split
from transferlab.training.build import build_experiment
from transferlab.training.callbacks import LastCheckpoint
from transferlab.training.loggers import csv_logger
from transferlab.training.run import train
from transferlab.training.rundir import OutputDirError, check_output_dir
from transferlab.training.validate import ConfigError, validate


def idx_overrides(idx_dir: Path) -> list[str]:
    return [
        *TINY,
        f"data.root={idx_dir}",
        "data.search_dirs=[]",
        "model=small_cnn",
        "pretrained=false",
    ]


def problems(overrides: list[str]) -> str:
    with pytest.raises(ConfigError) as err:
        validate(compose_train(overrides, output_dir=Path("unused")))
    assert "\n" not in str(err.value)
    return str(err.value)


@pytest.mark.parametrize(
    "override,reason",
    [
        ("trainer.max_epochs=two", "trainer.max_epochs='two': must be int"),
        (
            "+trainer.max_epoch=3",
            "trainer.max_epoch: unknown option for Trainer (did you mean max_epochs?)",
        ),
        (
            "+data.batchsize=8",
            "data.batchsize: unknown option for IdxDataModule (did you mean batch_size?)",
        ),
        ("model.head.hidden=0", "model.head.hidden=0: must be at least 1"),
        ("data.class_names=[shirt]", "data.class_names has 1 class"),
        ("ckpt_path=x.ckpt", "resume=true and ckpt_path are both set"),
        ("data.val_fraction=1.5", "data.val_fraction=1.5: must be between 0 and 1"),
        ("optimizer.lr=abc", "optimizer.lr='abc': must be float (AdamW)"),
        ("data.train_per_class=0", "data.train_per_class=0: must be at least 1 (null: all"),
        ("data.train_per_class=-2", "data.train_per_class=-2: must be at least 1"),
        ("trainer.max_epochs=0", "trainer.max_epochs=0: must be at least 1"),
        (
            "trainer.max_epochs=-1",
            "trainer.max_epochs=-1 (no epoch limit) needs trainer.max_steps > 0",
        ),
    ],
)
def test_bad_config_is_named_in_one_line(override, reason):
    extra = ["head=mlp"] if "head.hidden" in override else []
    extra += ["resume=true"] if "ckpt_path" in override else []
    assert reason in problems([override, *extra])


@pytest.mark.parametrize(
    "overrides,reason",
    [
        (
            ["finetune=freeze_unfreeze", "finetune.unfreeze_at=10", "trainer.max_epochs=2"],
            "finetune.unfreeze_at=10: must be below trainer.max_epochs=2, "
            "or the backbone never trains",
        ),
        (
            ["finetune=progressive", "finetune.unfreeze_at=[3,4]", "trainer.max_epochs=3"],
            "finetune.unfreeze_at=[3, 4]: its earliest epoch 3 must be below "
            "trainer.max_epochs=3, or the backbone never trains",
        ),
    ],
)
def test_unfreeze_past_the_last_epoch_is_refused(overrides, reason):
    assert reason in problems(overrides)


@pytest.mark.parametrize(
    "overrides",
    [
        ["finetune=freeze_unfreeze", "finetune.unfreeze_at=1", "trainer.max_epochs=2"],
        ["finetune=progressive", "trainer.max_epochs=2"],  # later stages may stay frozen
        ["finetune=linear_probe", "trainer.max_epochs=1"],  # null: frozen by design
        ["finetune.unfreeze_at=10", "trainer.max_epochs=-1", "trainer.max_steps=100"],
    ],
)
def test_unfreeze_within_training_validates(overrides):
    validate(compose_train(overrides, output_dir=Path("x")))


@pytest.mark.parametrize(
    "group",
    [
        *("model", "logger", "trainer", "optimizer", "scheduler", "augment", "data", "callbacks"),
        *("finetune", "mixup", "experiment", "head"),
    ],
)
def test_every_shipped_option_validates(group):
    for option in sorted(p.stem for p in (CONF / group).glob("*.yaml")):
        validate(compose_train([f"{group}={option}"], output_dir=Path("x")))


@pytest.mark.slow
def test_cli_config_error_is_one_line_exit_2(tmp_path: Path):
    result = run_script(
        "train.py",
        ["head=mlp", "model.head.hidden=0", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "error: model.head.hidden=0: must be at least 1"
    )


def test_dataset_with_one_class_is_refused(idx_dir: Path):
    cfg = compose_train([*idx_overrides(idx_dir), "data.class_names=[only]"], Path("x"))
    with pytest.raises(ConfigError, match="1 class"):
        build_experiment(cfg)


@pytest.mark.slow
def test_output_dir_under_a_file_is_refused_before_hydra_writes(tmp_path: Path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    result = run_script("train.py", [f"hydra.run.dir={blocker}/run"], cwd=tmp_path)
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == f"error: output dir {blocker}/run: {blocker} is a file, not a directory"
    )


def test_full_disk_is_refused_before_training(tmp_path: Path, idx_dir: Path):
    run_dir = tmp_path / "run"
    cfg = compose_train([*idx_overrides(idx_dir), "min_free_mb=1e12"], output_dir=run_dir)
    with pytest.raises(OutputDirError, match=r"MB free, min_free_mb=1e\+12"):
        train(cfg)
    assert not (run_dir / "checkpoints").exists() and not (run_dir / "results.json").exists()


def test_unwritable_dir_is_refused(tmp_path: Path):
    with pytest.raises(OutputDirError, match="not writable"):
        check_output_dir(Path("/proc/transferlab-run"))  # procfs refuses even root
    check_output_dir(tmp_path / "new" / "run", min_free_mb=1)
    assert (tmp_path / "new" / "run").is_dir() and not list((tmp_path / "new" / "run").iterdir())


def set_up_data(idx_dir: Path):
    exp = build_experiment(compose_train(idx_overrides(idx_dir), Path("x")))
    exp.datamodule.setup("fit")
    return exp.datamodule


def test_changed_data_is_reported_against_the_stored_split(tmp_path: Path, idx_dir: Path):
    check_split(set_up_data(idx_dir), tmp_path)
    stored = (tmp_path / SPLIT_FILE).read_text()
    check_split(set_up_data(idx_dir), tmp_path)  # the same data: silent

    images = np.full((220, 28, 28), 7)
    write_idx(idx_dir / "train-images-idx3-ubyte.gz", images)  # 20 images added
    write_idx(idx_dir / "train-labels-idx1-ubyte.gz", np.arange(220) % 10)
    with pytest.raises(DataChangedError) as err:
        check_split(set_up_data(idx_dir), tmp_path)
    message = str(err.value)
    # 20 more images redraw the seeded split: exactly what a resume must not silently mix
    assert re.search(r"train: [1-9]\d* samples added, \d+ removed \(e.g. ", message)
    assert re.search(r"val: [1-9]\d* samples added, \d+ removed", message)
    assert "files modified: 2 (e.g. train-images-idx3-ubyte.gz" in message
    assert (tmp_path / SPLIT_FILE).read_text() == stored  # the record is never overwritten


def test_corrupted_file_with_same_samples_is_reported(tmp_path: Path, idx_dir: Path):
    check_split(set_up_data(idx_dir), tmp_path)
    write_idx(idx_dir / "t10k-images-idx3-ubyte.gz", np.zeros((60, 28, 28)))
    with pytest.raises(DataChangedError, match=r"files modified: 1 \(e.g. t10k-images"):
        check_split(set_up_data(idx_dir), tmp_path)


@pytest.mark.slow
def test_deterministic_runs_with_one_seed_agree_exactly(tmp_path: Path, idx_dir: Path):
    overrides = [*idx_overrides(idx_dir), "trainer.deterministic=true", "data.num_workers=1"]
    overrides += ["trainer.max_epochs=2", "callbacks.progress_bar=null"]
    first, second = (
        train(compose_train(overrides, output_dir=tmp_path / name)) for name in ("a", "b")
    )
    assert first["test"] == second["test"] and first["test"]["test/log_loss"] > 0
    metrics = [{k: v for k, v in row.items() if k != "train_seconds"} for row in first["history"]]
    assert metrics == [
        {k: v for k, v in row.items() if k != "train_seconds"} for row in second["history"]
    ]


def test_csv_logger_keeps_the_metrics_of_an_earlier_attempt(tmp_path: Path):
    earlier = tmp_path / "csv" / "metrics.csv"
    earlier.parent.mkdir()
    earlier.write_text("epoch,step,train/loss\n0,9,1.5\n")
    logger = csv_logger(str(tmp_path))
    logger.log_metrics({"train/loss": 0.5}, step=10)
    logger.save()
    assert (
        tmp_path / "csv" / "metrics.attempt1.csv"
    ).read_text() == "epoch,step,train/loss\n0,9,1.5\n"
    assert earlier.read_text().splitlines()[1:] == ["10,0.5"]


@pytest.mark.slow
def test_rerun_on_changed_data_stops_before_training(tmp_path: Path, idx_dir: Path):
    run_dir = tmp_path / "run"
    overrides = [*idx_overrides(idx_dir), "callbacks.progress_bar=null"]
    train(compose_train(overrides, output_dir=run_dir))
    assert (run_dir / SPLIT_FILE).is_file()
    trained = (run_dir / "checkpoints" / "last.ckpt").stat().st_mtime_ns
    (idx_dir / "t10k-labels-idx1-ubyte.gz").unlink()
    write_idx(idx_dir / "t10k-labels-idx1-ubyte.gz", np.arange(60) % 9)  # relabelled test set
    with pytest.raises(DataChangedError, match=r"files modified: 1 \(e.g. t10k-labels"):
        train(compose_train(overrides, output_dir=run_dir))
    assert (run_dir / "checkpoints" / "last.ckpt").stat().st_mtime_ns == trained  # no step taken


class _Recording(LastCheckpoint):
    """LastCheckpoint that also notes the global step of each save."""

    def __init__(self, dirpath: str, every_n_train_steps: int) -> None:
        super().__init__(dirpath, every_n_train_steps)
        self.saved_at: list[int] = []

    def _save(self, trainer: L.Trainer) -> None:
        super()._save(trainer)
        self.saved_at.append(trainer.global_step)


class _Linear(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 2)

    def training_step(self, batch, batch_idx):
        return torch.nn.functional.cross_entropy(self.layer(batch[0]), batch[1])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.parametrize(
    ("batches", "saved_at"),
    [(1, [3, 6, 7]), (4, [3, 4, 6, 8, 9, 12])],
    ids=["one-step-epochs", "long-epochs"],
)
def test_last_checkpoint_saves_short_epochs_every_n_steps(tmp_path: Path, batches, saved_at):
    """One-step epochs (10 images per class) save every N steps and at the end, not per epoch;
    epochs of N steps or more still save at each end as well as every N steps."""
    data = torch.utils.data.TensorDataset(
        torch.randn(4 * batches, 4), torch.randint(0, 2, (4 * batches,))
    )
    checkpoint = _Recording(str(tmp_path), every_n_train_steps=3)
    epochs = 7 if batches == 1 else 3
    trainer = L.Trainer(
        max_epochs=epochs,
        callbacks=[checkpoint],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=True,
        default_root_dir=tmp_path,
    )
    trainer.fit(_Linear(), torch.utils.data.DataLoader(data, batch_size=4))
    assert checkpoint.saved_at == saved_at
    assert torch.load(checkpoint.path, weights_only=False)["global_step"] == batches * epochs
