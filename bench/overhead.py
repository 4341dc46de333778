"""Framework overhead: the real Classifier + Lightning Trainer versus a plain PyTorch loop.

Both sides train the same architecture on the same DataModule batches and batch size; the plain
loop is the honest baseline written here. They take turns chunk by chunk in one process: after
every ``--chunk`` steps of the Trainer, a callback runs ``--chunk`` plain steps on its own copy of
the model, so drift in a shared machine's speed hits both sides of a pair alike. The table reports
the median images/s of each side, the median and interquartile range of the paired ratios
framework / plain (goal >= 0.97), and the milliseconds the framework adds to a step.
``small_cnn`` has the shortest step, so it shows that fixed cost best.

    python bench/overhead.py                 # small_cnn, resnet18 and efficientnet_lite0 on CPU
    python bench/overhead.py --models resnet18 --steps 103 --size 64 --repeats 3

Only whole chunks after the 3 warm-up steps are timed: give ``--steps`` as 3 + a multiple of
``--chunk``.
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
from transferlab.training.build import build_experiment, build_trainer


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


def preloaded_batches(cfg, steps: int) -> list:
    """The DataModule's own first ``steps`` train batches, decoded once so the loader is no factor."""
    exp = build_experiment(cfg)
    exp.datamodule.setup("fit")
    loader = iter(exp.datamodule.train_dataloader())
    return [next(loader) for _ in range(steps)]


class PlainLoop:
    """A hand-written training step (forward, cross-entropy, backward, step) on its own copy."""

    def __init__(self, cfg, device: torch.device) -> None:
        exp = build_experiment(cfg)
        self.model = common.as_trained(exp.module.net, cfg, device)
        self.optimizer = exp.module.optimizer_factory(params=self.model.parameters())
        self.device = device

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        loss = F.cross_entropy(self.model(x), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


class PairedChunks(L.Callback):
    """After each ``chunk`` Trainer steps (past ``warmup``): that chunk's time, then the time of
    ``chunk`` plain steps on the same batches. The device is synchronised only at chunk ends, so
    queued GPU work overlaps as it would in a real run."""

    def __init__(self, plain: PlainLoop, batches: list, chunk: int, warmup: int = 3) -> None:
        self.plain, self.batches, self.chunk, self.warmup = plain, batches, chunk, warmup
        self.pairs: list[tuple[float, float, int]] = []  # (framework s, plain s, images)
        self._start = 0.0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        done = trainer.global_step - self.warmup
        if done < 0 or done % self.chunk:
            return
        sync(self.plain.device)
        now = time.perf_counter()
        if done > 0:
            chunk = self.batches[batch_idx + 1 - self.chunk : batch_idx + 1]
            framework_s = now - self._start
            for x, y in chunk:
                self.plain.step(x, y)
            sync(self.plain.device)
            plain_s = time.perf_counter() - now
            self.pairs.append((framework_s, plain_s, sum(len(y) for _, y in chunk)))
        else:  # the plain side's warm-up
            for x, y in self.batches[: self.warmup]:
                self.plain.step(x, y)
            sync(self.plain.device)
        self._start = time.perf_counter()


def paired_run(cfg, batches: list, device: torch.device, chunk: int) -> list:
    """The real Classifier in the real Trainer, every callback of the default run, paired."""
    exp = build_experiment(cfg)
    trainer = build_trainer(cfg)
    pairing = PairedChunks(PlainLoop(cfg, device), batches, chunk)
    trainer.callbacks.append(pairing)
    trainer.fit(exp.module, train_dataloaders=DataLoader(batches, batch_size=None))
    return pairing.pairs


def quartiles(values: list[float]) -> tuple[float, float, float]:
    q1, q2, q3 = statistics.quantiles(values, n=4) if len(values) > 1 else values * 3
    return q1, q2, q3


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--models", nargs="+", default=["small_cnn", "resnet18", "efficientnet_lite0"]
    )
    parser.add_argument("--steps", type=int, default=43)
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
        pairs = [
            p for _ in range(args.repeats) for p in paired_run(cfg, batches, device, args.chunk)
        ]
        ours = statistics.median(n / f for f, _, n in pairs)
        plain = statistics.median(n / p for _, p, n in pairs)
        q1, ratio, q3 = quartiles([p / f for f, p, _ in pairs])
        extra_ms = statistics.median(1000 * args.batch * (f - p) / n for f, p, n in pairs)
        rows.append(
            [
                model,
                f"{args.size}px b{args.batch}",
                f"{plain:.1f}",
                f"{ours:.1f}",
                f"{ratio:.3f}",
                f"{q1:.3f}-{q3:.3f}",
                f"{extra_ms:+.1f}",
                str(len(pairs)),
            ]
        )
    print_table(
        f"Framework overhead ({device.type}, chunks of {args.chunk} steps taken in turns; median of paired ratios)",
        [
            "model",
            "input",
            "plain img/s",
            "framework img/s",
            "ratio",
            "ratio IQR",
            "ms/step added",
            "pairs",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
