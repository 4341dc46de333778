"""Framework overhead: the real Classifier + Lightning Trainer versus a plain PyTorch loop.

Both sides train the same model on the same DataModule loader, batch size and number of steps;
the plain loop is the honest baseline written here. Runs alternate (plain, framework, plain, ...)
so that background load hits both sides alike; the table reports the median images/s, the median
and range of the paired ratios framework / plain (goal >= 0.97), and the milliseconds the
framework adds to a step. ``small_cnn`` has the shortest step, so it shows that fixed cost best.

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


def plain_loop(cfg, batches, device: torch.device, chunk: int) -> float:
    """images/s of a hand-written loop: forward, cross-entropy, backward, step."""
    exp = build_experiment(cfg)
    model = exp.module.net.to(device).train()
    optimizer = exp.module.optimizer_factory(
        params=[p for p in model.parameters() if p.requires_grad]
    )
    timer = ChunkTimer(device, chunk)
    for x, y in batches:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        timer.step(len(y))
    return timer.images_per_second


def framework(cfg, batches, device: torch.device, chunk: int) -> float:
    """images/s of the real Classifier in the real Trainer, every callback of the default run."""
    exp = build_experiment(cfg)
    trainer = build_trainer(cfg)
    timer = ChunkTimer(device, chunk)
    trainer.callbacks.append(timer)
    trainer.fit(exp.module, train_dataloaders=batches)
    return timer.images_per_second


class ChunkTimer(L.Callback):
    """images/s over chunks of ``chunk`` steps after ``warmup``; the median chunk, so that a
    moment of background load on a shared machine does not decide the result. The device is
    synchronised only at chunk ends, so queued GPU work overlaps as it would in a real run."""

    def __init__(self, device: torch.device, chunk: int, warmup: int = 3) -> None:
        self.device, self.chunk, self.warmup = device, chunk, warmup
        self.steps, self.images, self.rates = 0, 0, []
        self._start = 0.0

    def step(self, images: int) -> None:
        self.steps += 1
        self.images += images
        if self.steps >= self.warmup and (self.steps - self.warmup) % self.chunk == 0:
            sync(self.device)
            now = time.perf_counter()
            if self.steps > self.warmup:
                self.rates.append(self.images / (now - self._start))
            self._start, self.images = now, 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.step(len(batch[1]))

    @property
    def images_per_second(self) -> float:
        return statistics.median(self.rates)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--models", nargs="+", default=["small_cnn", "resnet18", "efficientnet_lite0"]
    )
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=10, help="steps per timed chunk")
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
            plain.append(plain_loop(cfg, batches, device, args.chunk))
            ours.append(framework(cfg, batches, device, args.chunk))
        ratios = sorted(f / p for p, f in zip(plain, ours, strict=True))
        extra_ms = statistics.median(
            1000 * args.batch * (1 / f - 1 / p) for p, f in zip(plain, ours, strict=True)
        )
        rows.append(
            [
                model,
                f"{args.size}px b{args.batch}",
                f"{statistics.median(plain):.1f}",
                f"{statistics.median(ours):.1f}",
                f"{statistics.median(ratios):.3f}",
                f"{ratios[0]:.3f}-{ratios[-1]:.3f}",
                f"{extra_ms:+.1f}",
            ]
        )
    print_table(
        f"Framework overhead ({device.type}, {args.steps} steps x {args.repeats} alternating repeats; median of paired ratios)",
        [
            "model",
            "input",
            "plain img/s",
            "framework img/s",
            "ratio",
            "ratio range",
            "ms/step added",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
