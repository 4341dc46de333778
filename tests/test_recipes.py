"""The newcomer recipes of docs/extending.md work exactly as the page shows them: its yaml blocks,
added to a copy of conf/, compose and validate one by one, and its command trains with all three
(the new dataset's classes, the new backbone, the new strategy's stages and learning rates)."""

from __future__ import annotations

import json
from pathlib import Path

import hydra
import pytest
import timm
from hydra import compose, initialize_config_dir

from tests.conftest import ROOT
from tests.test_docs import (
    conf_with,
    page_commands,
    page_files,
    runnable,
    shell,
    validate_train,
    write_photos,
)
from transferlab.training.finetune import backbone_stages

PAGE = ROOT / "docs" / "extending.md"


def new_choices() -> dict[str, str]:
    """group -> new choice, for each file the page adds (conf/<group>/<choice>.yaml)."""
    paths = (Path(p) for p in page_files(PAGE))
    return {p.parent.relative_to("conf").as_posix(): p.stem for p in paths}


def test_the_page_adds_a_dataset_a_backbone_and_a_strategy():
    assert set(new_choices()) == {"data", "model", "finetune"}


@pytest.mark.parametrize("group", sorted(new_choices()))
def test_each_recipe_composes_and_validates_alone(group: str, tmp_path: Path):
    conf = conf_with(page_files(PAGE), tmp_path)
    choice = new_choices()[group]
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose("train", [f"{group}={choice}"], return_hydra_config=True)
    assert cfg.hydra.runtime.choices[group] == choice
    validate_train(cfg)


@pytest.mark.slow
def test_the_three_recipes_train_together(tmp_path: Path):
    """The page's command, run by train.py with the page's files in its config dir."""
    conf = conf_with(page_files(PAGE), tmp_path)
    photos = write_photos(tmp_path)  # where the dataset recipe's root points (~ is tmp_path)
    [command] = [c for c in page_commands(PAGE) if c.entry_point == "train.py"]
    train_py = str(ROOT / "train.py")  # Hydra's flags go before the overrides
    code = runnable(command, {}).replace(train_py, f"{train_py} --config-path {conf}")
    result = shell(f"{code} hydra.run.dir={tmp_path / 'run'}", tmp_path, 300)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["status"] == "ok"

    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose("train", [f"{g}={c}" for g, c in new_choices().items()])
    assert results["classes"] == sorted(p.name for p in photos.iterdir())
    assert results["backbone"] == cfg.model.name
    strategy = hydra.utils.instantiate(cfg.finetune)
    stages = backbone_stages(timm.create_model(cfg.model.name, pretrained=False))
    trained = [s for s in stages if strategy.trains(s, 0)]
    assert 0 < len(trained) < len(stages)  # neither a linear probe nor full fine-tuning
    groups = [g for g in results["history"][0]["param_groups"] if g["trainable"]]
    assert [g["name"] for g in groups] == ["head", *(s.name for s in trained)]
    for group, stage in zip(groups[1:], trained, strict=True):
        assert group["lr"] == pytest.approx(groups[0]["lr"] * strategy.lr_decay**stage.depth)
