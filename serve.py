"""Serve a web page + HTTP API comparing up to two checkpoints:
python serve.py ckpts=[<pretrained run>/checkpoints/best.ckpt,<scratch run>/checkpoints/best.ckpt]"""

import hydra
from omegaconf import DictConfig

from transferlab.errors import main_or_exit, run_or_exit
from transferlab.inference.serve.main import serve


@hydra.main(version_base="1.3", config_path="conf", config_name="serve")
def main(cfg: DictConfig) -> None:
    run_or_exit(serve, cfg)


if __name__ == "__main__":
    main_or_exit(main)
