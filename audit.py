"""Find leakage and label noise before training: python audit.py data=<name>
Writes leakage.csv, suspects.csv and audit.md into outputs/audit/<date>/<time>/."""

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from transferlab.errors import run_or_exit
from transferlab.features.audit_report import run_audit


def audit(cfg: DictConfig) -> None:
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    counts = run_audit(cfg, out_dir)
    print(
        f"{counts['leaked_pairs']} leaked pairs, {counts['suspects']} label suspects: {out_dir / 'audit.md'}"
    )


@hydra.main(version_base="1.3", config_path="conf", config_name="audit")
def main(cfg: DictConfig) -> None:
    run_or_exit(audit, cfg)


if __name__ == "__main__":
    main()
