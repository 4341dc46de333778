"""Framework overhead: the real Classifier + Lightning Trainer versus a plain PyTorch loop.

Both sides train the same model on the same DataModule loader, batch size and number of steps;
the plain loop is the honest baseline written here. Runs alternate (plain, framework, plain, ...)
so that background load hits both sides alike; the table reports the median images/s and the
ratio framework / plain (goal >= 0.97).

    python bench/overhead.py                       # resnet18 and efficientnet_lite0 on CPU
    python bench/overhead.py --models resnet18 --steps 60 --size 64 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from bench import common
from bench.common import print_table, sync
from transferlab.build import build_experiment, build_trainer
from transferlab.callbacks import RunStats


def compose_bench(model: str, size: int, batch: int, steps: int, accelerator: str) -> object:
    return common.compose_bench(
        [
            f"model={model}",
            "logger=none",
            f"input.size={size}",
            f"data.batch_size={batch}",
            "data.num_workers=0",
            f"trainer.accelerator={accelerator}",
            f"trainer.max_steps={steps}",
            "trainer.limit_val_batches=0",
            "+trainer.enable_checkpointing=false",
            "+trainer.enable_model_summary=false",
            "~callbacks.model_checkpoint",
            "~callbacks.last_checkpoint",
        ]
    )


def preloaded_batches(cfg, steps: int) -> DataLoader:
    """The DataModule's own first ``steps`` train batches, decoded once so the loader is no factor;
    both sides iterate the same DataLoader over them."""
    exp = build_experiment(cfg)
    exp.datamodule.setup("fit")
    loader = iter(exp.datamodule.train_dataloader())
    return DataLoader([next(loader) for _ in range(steps)], batch_size=None)


def plain_loop(cfg, batches, device: torch.device) -> float:
    """images/s of a hand-written loop: forward, cross-entropy, backward, step."""
    exp = build_experiment(cfg)
    model = exp.module.net.to(device).train()
    optimizer = exp.module.optimizer_factory(
        params=[p for p in model.parameters() if p.requires_grad]
    )
    warmup = 3
    for i, (x, y) in enumerate(batches):
        if i == warmup:
            sync(device)
            start = time.perf_counter()
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    sync(device)
    return sum(len(y) for _, y in list(batches)[warmup:]) / (time.perf_counter() - start)


def framework(cfg, batches) -> float:
    """images/s of the real Classifier in the real Trainer, timed by RunStats after warm-up."""
    exp = build_experiment(cfg)
    trainer = build_trainer(cfg)
    stats = next(c for c in trainer.callbacks if isinstance(c, RunStats))
    warm = _WarmupReset(stats, warmup=3)
    trainer.callbacks.append(warm)
    trainer.fit(exp.module, train_dataloaders=batches)
    return stats.images_per_second


class _WarmupReset(L.Callback):
    """Forget the first ``warmup`` steps, as the plain loop does."""

    def __init__(self, stats: RunStats, warmup: int) -> None:
        self.stats, self.warmup = stats, warmup

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup:
            self.stats.images, self.stats.train_seconds = 0, 0.0
            self.stats._start = time.perf_counter()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=["resnet18", "efficientnet_lite0"])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--accelerator", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.accelerator if args.accelerator != "gpu" else "cuda")
    rows = []
    for model in args.models:
        cfg = compose_bench(
            model, args.size, args.batch, args.steps, "gpu" if device.type == "cuda" else "cpu"
        )
        batches = preloaded_batches(cfg, args.steps)
        plain, ours = [], []
        for _ in range(args.repeats):
            plain.append(plain_loop(cfg, batches, device))
            ours.append(framework(cfg, batches))
        p, f = statistics.median(plain), statistics.median(ours)
        rows.append([model, f"{args.size}px b{args.batch}", f"{p:.1f}", f"{f:.1f}", f"{f / p:.3f}"])
    print_table(
        f"Framework overhead ({device.type}, {args.steps} steps x {args.repeats} alternating repeats, median)",
        ["model", "input", "plain img/s", "framework img/s", "ratio"],
        rows,
    )


if __name__ == "__main__":
    main()
