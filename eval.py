"""Evaluate a checkpoint on its run's test split: python eval.py ckpt_path=<run>/checkpoints/best.ckpt"""

import hydra
from omegaconf import DictConfig

from transferlab.errors import main_or_exit, run_or_exit
from transferlab.evaluation.evaluate import evaluate


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    run_or_exit(evaluate, cfg)


if __name__ == "__main__":
    main_or_exit(main)
