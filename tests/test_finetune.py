"""Fine-tuning strategies through a real Trainer: what trains at each epoch, at which lr, and
that a resumed run continues in the right phase."""

from __future__ import annotations

from pathlib import Path

import hydra
import lightning as L
import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

from tests.conftest import TINY, compose_train
from transferlab.models import create_backbone
from transferlab.models.heads import MLPHead
from transferlab.training.build import build_experiment, build_trainer
from transferlab.training.finetune import StagedFinetuning, backbone_stages, classifier_of

LR = 1e-3
FAST = [
    *TINY,
    "data.train_per_class=2",
    "data.batch_size=4",
    "trainer.limit_train_batches=1",
    "trainer.limit_val_batches=0",
    f"optimizer.lr={LR}",
    "scheduler=none",
    "logger=none",
    "callbacks.progress_bar=null",
    "callbacks.model_checkpoint=null",
    "pretrained=false",
]
ARCHS = ["resnet18", "efficientnet_b0"]


class Probe(L.Callback):
    """Records, at each epoch's first batch, what requires grad, the optimizer groups, BN modes."""

    def __init__(self) -> None:
        self.epochs: dict[int, dict] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx:
            return
        groups = trainer.optimizers[0].param_groups
        self.epochs[trainer.current_epoch] = {
            "trainable": {id(p) for p in pl_module.parameters() if p.requires_grad},
            "in_optimizer": {id(p) for g in groups for p in g["params"]},
            "lrs": {g["name"]: g["lr"] for g in groups},
            "bn_training": {
                id(m): m.training for m in pl_module.modules() if isinstance(m, _BatchNorm)
            },
        }


def fit(run_dir: Path, data: Path, *overrides: str, ckpt_path: str | None = None):
    """Build and fit the composed config as train.py does, with a Probe attached."""
    cfg = compose_train([*FAST, f"data.search_dirs=[{data}]", *overrides], output_dir=run_dir)
    exp = build_experiment(cfg)
    trainer = build_trainer(cfg)
    probe = Probe()
    trainer.callbacks.append(probe)
    trainer.fit(exp.module, datamodule=exp.datamodule, ckpt_path=ckpt_path)
    finetune = next(c for c in trainer.callbacks if isinstance(c, StagedFinetuning))
    return exp.module, probe, finetune


def ids(stages) -> set[int]:
    return {id(p) for s in stages for p in s.parameters()}


STRATEGIES = {
    # strategy overrides -> per epoch, the depths (1 = just below the head) of the stages that train
    "full": ([], lambda n: [range(1, n + 1)]),
    "linear_probe": ([], lambda n: [range(0)] * 2),
    "freeze_unfreeze": (["finetune.unfreeze_at=1"], lambda n: [range(0), range(1, n + 1)]),
    "progressive": (["finetune.unfreeze_at=[1,2]"], lambda n: [range(0), range(1, 2), range(1, 3)]),
    "discriminative": ([], lambda n: [range(1, n + 1)]),
}


@pytest.mark.parametrize(
    ("arch", "names"),
    [
        ("resnet18", ["layer4", "layer3", "layer2", "layer1", "conv1+bn1"]),
        ("efficientnet_b0", ["blocks.6+conv_head+bn2", *[f"blocks.{i}" for i in range(5, -1, -1)]]),
        ("transferlab_smallcnn", ["hidden.1", "features.9", "features.8", "features.5"]),
    ],
)
def test_stages_come_from_timms_grouping_top_first(arch: str, names: list[str]):
    net = create_backbone(arch, num_classes=3, pretrained=False, head=MLPHead)
    stages = backbone_stages(net)
    assert [s.name for s in stages][: len(names)] == names
    assert [s.depth for s in stages] == list(range(1, len(stages) + 1))
    head = {id(p) for p in classifier_of(net).parameters()}
    staged = [id(p) for s in stages for p in s.parameters()]
    assert len(head) == 4 and not head & set(staged)  # the whole MLP is the head
    assert sorted([*head, *staged]) == sorted(id(p) for p in net.parameters())


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_strategy_trains_the_right_stages_at_each_epoch(
    idx_dir: Path, tmp_path: Path, arch: str, strategy: str
):
    extra, expected = STRATEGIES[strategy]
    epochs = len(expected(0))
    overrides = [f"model={arch}", f"finetune={strategy}", *extra, f"trainer.max_epochs={epochs}"]
    module, probe, finetune = fit(tmp_path, idx_dir, *overrides)
    stages = backbone_stages(module.net)
    assert [s.name for s in finetune.stages] == [s.name for s in stages]
    assert len(stages) >= 5, "timm's group_matcher should give stem + stages"
    head = {id(p) for p in classifier_of(module.net).parameters()}
    for epoch, depths in enumerate(expected(len(stages))):
        seen = probe.epochs[epoch]
        training = [s for s in stages if s.depth in depths]
        assert seen["trainable"] == head | ids(training), f"epoch {epoch}"
        assert seen["in_optimizer"] == seen["trainable"], "optimizer sees only trainable params"
        late = strategy in ("freeze_unfreeze", "progressive") and epoch >= 1
        factor = finetune.unfreeze_lr_factor if late else 1.0
        assert seen["lrs"]["head"] == pytest.approx(LR * factor)
        for stage in training:
            want = LR * factor * finetune.lr_decay**stage.depth
            assert seen["lrs"][stage.name] == pytest.approx(want), (epoch, stage.name)


def test_linear_probe_keeps_backbone_and_batchnorm_statistics_frozen(idx_dir, tmp_path):
    cfg_overrides = ["model=resnet18", "finetune=linear_probe", "trainer.max_epochs=2"]
    cfg = compose_train([*FAST, f"data.search_dirs=[{idx_dir}]", *cfg_overrides], tmp_path)
    exp = build_experiment(cfg)
    before = {k: v.clone() for k, v in exp.module.net.state_dict().items()}
    trainer = build_trainer(cfg)
    probe = Probe()
    trainer.callbacks.append(probe)
    trainer.fit(exp.module, datamodule=exp.datamodule)
    after = exp.module.net.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"fc.weight", "fc.bias"}  # running_mean/var and num_batches_tracked kept
    for epoch in (0, 1):
        assert not any(probe.epochs[epoch]["bn_training"].values()), "frozen BN must be in eval"


def test_mlp_head_is_the_head_and_trains(idx_dir, tmp_path):
    overrides = ["model=resnet18", "head=mlp", "finetune=linear_probe"]
    cfg = compose_train([*FAST, f"data.search_dirs=[{idx_dir}]", *overrides], tmp_path)
    exp = build_experiment(cfg)
    head = classifier_of(exp.module.net)
    assert isinstance(head, torch.nn.Sequential) and head[0].out_features == 512
    before = [p.detach().clone() for p in head.parameters()]
    trainer = build_trainer(cfg)
    trainer.fit(exp.module, datamodule=exp.datamodule)
    optimized = {id(p) for g in trainer.optimizers[0].param_groups for p in g["params"]}
    assert optimized == {id(p) for p in head.parameters()}
    assert all(not torch.equal(b, p) for b, p in zip(before, head.parameters(), strict=True))


@pytest.mark.parametrize("scheduler", ["exponential", "cosine", "onecycle"])
def test_groups_added_mid_run_follow_the_scheduler(idx_dir, tmp_path, scheduler):
    overrides = ["model=resnet18", "finetune=freeze_unfreeze", "finetune.lr_decay=0.5"]
    overrides += [f"scheduler={scheduler}", "trainer.max_epochs=3", "trainer.limit_train_batches=2"]
    _, probe, _ = fit(tmp_path, idx_dir, *overrides)
    unfrozen, later = probe.epochs[1]["lrs"], probe.epochs[2]["lrs"]
    for lrs in (unfrozen, later):
        assert lrs["layer4"] / lrs["head"] == pytest.approx(0.5)
        assert lrs["conv1+bn1"] / lrs["head"] == pytest.approx(0.5**5)
    assert later["layer4"] != unfrozen["layer4"], "the scheduler moves the groups added late"


@pytest.mark.parametrize("stop_after", [1, 2], ids=["before-switch", "after-switch"])
def test_resumed_freeze_unfreeze_continues_in_the_right_phase(idx_dir, tmp_path, stop_after):
    overrides = ["model=resnet18", "finetune=freeze_unfreeze", "finetune.unfreeze_at=1"]
    overrides += ["scheduler=exponential"]
    first, _, _ = fit(tmp_path / "first", idx_dir, *overrides, f"trainer.max_epochs={stop_after}")
    last = tmp_path / "after_epoch.ckpt"
    first.trainer.save_checkpoint(last)  # what a checkpoint callback writes at an epoch's end
    module, probe, _ = fit(
        tmp_path / "resumed", idx_dir, *overrides, "trainer.max_epochs=3", ckpt_path=str(last)
    )
    assert sorted(probe.epochs) == list(range(stop_after, 3))
    everything = {id(p) for p in module.parameters()}
    for epoch, seen in probe.epochs.items():
        assert seen["trainable"] == everything == seen["in_optimizer"]
        assert seen["lrs"]["head"] == pytest.approx(LR * 0.5 * 0.8**epoch)  # factor x gamma^epoch
        assert seen["lrs"]["layer4"] == pytest.approx(seen["lrs"]["head"])


def test_training_options_compose_and_run_together(idx_dir, tmp_path):
    """cutmix, EMA, channels_last, gradient clipping and the lr finder in one tiny real run."""
    from timm.data import Mixup

    from transferlab.training.run import train

    overrides = [*FAST, f"data.search_dirs=[{idx_dir}]", "model=small_cnn", "mixup=cutmix"]
    overrides += ["callbacks=[default,ema,channels_last]", "callbacks.progress_bar=null"]
    overrides += ["trainer.gradient_clip_val=1.0", "finetune=freeze_unfreeze"]
    overrides += ["trainer.max_epochs=2", "trainer.limit_train_batches=null", "data.batch_size=2"]
    overrides += ["tune.lr_find=true", "tune.num_training=20", "tune.max_lr=0.1"]
    cfg = compose_train(overrides, output_dir=tmp_path / "run")
    mixer = build_experiment(cfg.copy()).module.mixup
    assert isinstance(mixer, Mixup) and mixer.cutmix_alpha == 1.0 and mixer.num_classes == 10
    results = train(cfg, {"model": "small_cnn", "finetune": "freeze_unfreeze"})
    assert results["status"] == "ok"
    lr = results["lr_find"]
    assert 1e-6 <= lr <= 0.1
    first, second = results["history"]
    assert [g["name"] for g in first["param_groups"]] == ["head"]
    assert first["param_groups"][0]["lr"] == pytest.approx(lr)
    assert [g["name"] for g in second["param_groups"]][:2] == ["head", "hidden.1"]
    assert second["param_groups"][0]["lr"] == pytest.approx(lr * 0.5)  # unfreeze_lr_factor


def test_drop_path_reaches_timm():
    from timm.layers import DropPath

    cfg = compose_train(["model=efficientnet_b0", "pretrained=false", "model.drop_path_rate=0.1"])
    net = hydra.utils.instantiate(cfg.model, num_classes=3)
    assert any(isinstance(m, DropPath) for m in net.modules())
