"""Survey a dataset before training on it: python inspect_data.py data=lamoda [data.root=...]
Writes data_report.md and samples.png into outputs/inspect/<date>/<time>/."""

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from transferlab.data.survey import write_data_report
from transferlab.errors import main_or_exit, run_or_exit
from transferlab.training.build import build_experiment


@hydra.main(version_base="1.3", config_path="conf", config_name="inspect_data")
def main(cfg: DictConfig) -> None:
    run_or_exit(survey, cfg)


def survey(cfg: DictConfig) -> None:
    exp = build_experiment(cfg)
    write_data_report(
        exp.datamodule,
        exp.input,
        Path(HydraConfig.get().runtime.output_dir),
        augment=OmegaConf.to_yaml(cfg.get("augment") or {}),
        samples_per_class=cfg.samples_per_class,
        grid_classes=cfg.grid_classes,
    )


if __name__ == "__main__":
    main_or_exit(main)
