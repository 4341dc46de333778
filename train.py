"""Train one experiment (or a sweep with -m). Config: conf/train.yaml; see README.md."""

import logging
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from transferlab.errors import main_or_exit, user_error
from transferlab.training.run import train

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    hydra_cfg = HydraConfig.get()
    try:
        results = train(cfg, choices=dict(hydra_cfg.runtime.choices))
    except Exception as err:
        if (message := user_error(err)) is not None:  # a config or data problem: one line
            print(f"error: {message}", file=sys.stderr)
            if hydra_cfg.mode != RunMode.MULTIRUN:
                sys.exit(2)
            return None
        if hydra_cfg.mode != RunMode.MULTIRUN:
            raise
        # results.json already says "failed"; Hydra would stop the sweep here, so go on instead
        log.exception("job %s failed; the sweep goes on", hydra_cfg.job.num)
        return None
    # The sweeper's objective (hparams_search maximises it): the best validation score, never the
    # test split's. None, as for a failed job above, is a failed trial; the study goes on.
    best = results.get("best_val")
    return best["value"] if best else None


if __name__ == "__main__":
    main_or_exit(main)
