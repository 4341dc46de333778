"""Rank backbones before training: python rank.py data=<name> 'models=[efficientnet_lite0,resnet50]'
Writes ranking.json, ranking.md and ranking.png into outputs/rank/<date>/<time>/ (docs/choosing-a-backbone.md)."""

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from transferlab.errors import run_or_exit
from transferlab.features.cache import FeatureCache
from transferlab.features.ranking import score_backbone, write_ranking
from transferlab.tables import printable


def rank(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    out_dir = Path(hydra_cfg.runtime.output_dir)
    cache = FeatureCache(cfg.features.cache_dir)
    rows = []
    for name in cfg.models:
        # each backbone as train.py would build it: its own yaml, the same data and overrides
        model_cfg = hydra.compose("rank", overrides=[*hydra_cfg.overrides.task, f"model={name}"])
        rows.append(score_backbone(name, model_cfg, cache))
    write_ranking(out_dir, rows, Path(cfg.sweep) if cfg.sweep else None)
    print(printable((out_dir / "ranking.md").read_text()))


@hydra.main(version_base="1.3", config_path="conf", config_name="rank")
def main(cfg: DictConfig) -> None:
    run_or_exit(rank, cfg)


if __name__ == "__main__":
    main()
