"""Export a checkpoint to ONNX (+ labels), checked against PyTorch:
python export.py ckpt_path=<run>/checkpoints/best.ckpt"""

import hydra
from omegaconf import DictConfig

from transferlab.errors import main_or_exit, run_or_exit
from transferlab.inference.export import export_checkpoint


@hydra.main(version_base="1.3", config_path="conf", config_name="export")
def main(cfg: DictConfig) -> None:
    run_or_exit(export_checkpoint, cfg)


if __name__ == "__main__":
    main_or_exit(main)
