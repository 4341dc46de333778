"""Predict a folder of images: python predict.py ckpt_path=<run>/checkpoints/best.ckpt input=~/photos"""

import hydra
from omegaconf import DictConfig

from transferlab.errors import main_or_exit, run_or_exit
from transferlab.inference.predict_folder import predict_folder


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    run_or_exit(predict_folder, cfg)


if __name__ == "__main__":
    main_or_exit(main)
