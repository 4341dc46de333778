"""Load the models once, then run the app with uvicorn on the configured address."""

from __future__ import annotations

import logging
from pathlib import Path

import uvicorn
from omegaconf import DictConfig

from transferlab.inference.serve.app import build_app
from transferlab.inference.serve.models import example_images, load_models

log = logging.getLogger(__name__)


def serve(cfg: DictConfig) -> None:
    ckpts = [str(c) for c in cfg.ckpts]
    models = load_models(ckpts, float(cfg.unknown.threshold), cfg.get("device"), cfg.paths)
    examples = example_images(
        models[0].run, Path(cfg.paths.output_dir) / "examples", int(cfg.examples)
    )
    app = build_app(models, examples, int(cfg.max_upload_mb * 1024 * 1024), int(cfg.max_pixels))
    if cfg.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("serving on %s: reachable from other machines", cfg.host)
    log.info("open http://%s:%d  (API: POST /api/predict, docs: /api/docs)", cfg.host, cfg.port)
    uvicorn.run(app, host=cfg.host, port=int(cfg.port), log_level="warning")
