"""Every shipped config composes, instantiates, and bad choices are explained."""

from __future__ import annotations

import itertools
from pathlib import Path

import hydra
import pytest
import torch
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from tests.conftest import CONF, ROOT, compose_train, run_script

MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))
OPTIMIZERS = sorted(p.stem for p in (CONF / "optimizer").glob("*.yaml"))
SCHEDULERS = sorted(p.stem for p in (CONF / "scheduler").glob("*.yaml"))


def test_required_groups_and_models_exist():
    for group in (
        "model",
        "data",
        "optimizer",
        "scheduler",
        "trainer",
        "logger",
        "callbacks",
        "paths",
        "hydra",
        "experiment",
        "augment",
    ):
        assert any((CONF / group).glob("*.yaml")), group
    assert {
        "resnet18",
        "resnet34",
        "resnet50",
        "resnet101",
        "efficientnet_b0",
        "efficientnet_lite0",
        "vgg16",
        "small_cnn",
    } <= set(MODELS)
    assert {"adamw", "adam", "sgd"} <= set(OPTIMIZERS)
    assert {"exponential", "cosine", "onecycle", "none"} <= set(SCHEDULERS)


@pytest.mark.parametrize(
    "model,optimizer,scheduler", itertools.product(MODELS, OPTIMIZERS, SCHEDULERS)
)
def test_every_model_optimizer_scheduler_composes(model, optimizer, scheduler):
    cfg = compose_train([f"model={model}", f"optimizer={optimizer}", f"scheduler={scheduler}"])
    assert cfg.model.name
    assert cfg.model.pretrained is True
    opt = hydra.utils.instantiate(cfg.optimizer)(params=[torch.nn.Parameter(torch.zeros(1))])
    assert opt.param_groups[0]["lr"] == cfg.optimizer.lr
    if scheduler == "none":
        assert cfg.scheduler is None


def test_exponential_scheduler_is_the_lamoda_gamma():
    assert compose_train(["scheduler=exponential"]).scheduler.gamma == 0.8


def test_sgd_uses_nesterov_momentum():
    cfg = compose_train(["optimizer=sgd"]).optimizer
    assert cfg.momentum > 0 and cfg.nesterov is True


def test_pretrained_flag_reaches_the_model():
    assert compose_train(["pretrained=false"]).model.pretrained is False


def test_gpu_trainer_is_bf16_and_ddp_uses_every_gpu():
    assert compose_train(["trainer=gpu"]).trainer.precision == "bf16-mixed"
    ddp = compose_train(["trainer=ddp"]).trainer
    assert ddp.strategy == "ddp" and ddp.devices == "auto" and ddp.accelerator == "auto"


def test_datasets_share_one_loader_base_that_is_not_a_dataset_choice():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        choices = GlobalHydra.instance().config_loader().get_group_options("data")
    assert "loader" not in choices and {"cifar10", "fashion_mnist", "image_folder"} <= set(choices)
    loader = OmegaConf.load(CONF / "data" / "loader" / "default.yaml")
    for name in choices:
        data = compose_train([f"data={name}", "experiment=none"]).data
        own = {k: data[k] for k in loader if data[k] != loader[k]}
        assert own in ({}, {"val_fraction": 0.2}), name  # the folder formats split 80/20
    assert compose_train(["data=image_folder"]).data.val_fraction == 0.2


def test_typo_in_group_option_lists_the_choices(tmp_path: Path):
    result = run_script("train.py", ["model=resnet19"], cwd=tmp_path, timeout=120)
    assert result.returncode != 0
    assert (
        "resnet19" in result.stderr
        and "resnet18" in result.stderr
        and "efficientnet_b0" in result.stderr
    )
    assert "Traceback" not in result.stderr


def test_readme_names_the_two_setup_commands():
    text = (ROOT / "README.md").read_text()
    assert "scripts/setup.sh" in text and (ROOT / "scripts" / "setup.sh").is_file()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "scripts/setup.sh test" in ci
