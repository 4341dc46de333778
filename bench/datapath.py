"""Data path versus model: can the DataModule's train loader feed the training step?

For each dataset: images/s of the real train loader (decode + augment + collate, workers as
configured), the share of one sample's time spent in decode / augment / collate (measured
in-process), and images/s of the model's train step on preloaded batches. Goal: loader >= 2x model.
In-memory datasets get a second row: the same data held as one uint8 tensor on the device and
augmented there in batches (``data.on_device=true``), which needs no loader workers at all.

    python bench/datapath.py                                   # Fashion-MNIST + a JPEG folder
    python bench/datapath.py --model resnet18 --size 224 --workers 2
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from PIL import Image
from torch.utils.data import default_collate

from bench import common
from bench.common import CONF, print_table, sync
from transferlab.data.datasets import ArrayDataset
from transferlab.data.on_device import DeviceBatches
from transferlab.training.build import build_experiment


def compose_data(data: list[str], model: str, size: int, batch: int, workers: int | None) -> object:
    return common.compose_bench(
        [
            *data,
            f"model={model}",
            "augment=standard",
            f"input.size={size}",
            f"data.batch_size={batch}",
            f"data.num_workers={'null' if workers is None else workers}",
        ]
    )


def write_jpeg_folder(root: Path, per_class: int, side: int = 400) -> Path:
    """Real JPEG files (smooth colour fields + noise, camera-like sizes) in class sub-folders."""
    rng = np.random.default_rng(0)
    for k in range(4):
        folder = root / f"class_{k}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            base = np.linspace(0, 255, side, dtype=np.float32)[None, :, None] * rng.random(3)
            noise = rng.normal(0, 20, (side * 3 // 4, side, 3))
            Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)).save(
                folder / f"{i}.jpg", quality=90
            )
    return root


def batches_rate(batches, count: int, device: torch.device) -> float:
    """images/s of ``count`` batches after the first (workers started, data uploaded)."""
    it = iter(batches)
    next(it)
    sync(device)
    start, seen = time.perf_counter(), 0
    for _ in range(count):
        try:
            seen += len(next(it)[1])
        except StopIteration:
            break
    sync(device)
    return seen / (time.perf_counter() - start)


def on_device_batches(cfg, device: torch.device) -> DeviceBatches:
    """train.py's own ``data.on_device=true`` path: the DataModule built with it, attached to a
    Trainer on ``device`` (where it puts the dataset), gives the train batches."""
    dm = build_experiment(OmegaConf.merge(cfg, {"data": {"on_device": True}})).datamodule
    dm.trainer = L.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    dm.setup("fit")
    return dm.train_dataloader()


def breakdown(dataset, samples: int, batch: int) -> dict[str, float]:
    """Seconds per image in decode, augment and collate, measured in this process."""
    decode = augment = 0.0
    outputs = []
    fetch = getattr(dataset, "raw", None)
    for i in range(samples):
        t0 = time.perf_counter()
        raw = fetch(i) if fetch else None
        t1 = time.perf_counter()
        outputs.append(dataset[i] if raw is None else (dataset.transform(image=raw)["image"], 0))
        t2 = time.perf_counter()
        decode, augment = decode + (t1 - t0), augment + (t2 - t1)
    t0 = time.perf_counter()
    for j in range(0, samples, batch):
        default_collate(outputs[j : j + batch])
    collate = time.perf_counter() - t0
    return {"decode": decode / samples, "augment": augment / samples, "collate": collate / samples}


def model_rate(module, cfg, loader_batch, device: torch.device, steps: int = 6) -> float:
    model = common.as_trained(module.net, cfg, device)
    optimizer = module.optimizer_factory(params=model.parameters())
    x, y = (t.to(device) for t in loader_batch)
    for i in range(steps + 1):
        if i == 1:
            sync(device)
            start = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    sync(device)
    return steps * len(y) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--workers", type=int, default=None, help="default: the DataModule's own")
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    tmp = Path(tempfile.mkdtemp(prefix="transferlab-datapath-"))
    datasets = {"fashion_mnist": ["data=fashion_mnist"]}
    per_class = max(160, -(-args.batch * (args.batches + 2) // 3))  # 4 classes, 80% train
    if (CONF / "data" / "image_folder.yaml").is_file():
        datasets["jpeg folder 400x300"] = [
            "data=image_folder",
            f"data.root={write_jpeg_folder(tmp / 'jpeg', per_class)}",
        ]
    rows = []
    for name, data in datasets.items():
        cfg = compose_data(data, args.model, args.size, args.batch, args.workers)
        exp = build_experiment(cfg)
        dm = exp.datamodule
        dm.setup("fit")
        loader = batches_rate(dm.train_dataloader(), args.batches, torch.device("cpu"))
        parts = breakdown(dm.train_set, 4 * args.batch, args.batch)
        model = model_rate(exp.module, cfg, next(iter(dm.train_dataloader())), device)
        total = sum(parts.values())
        rows.append(
            [
                name,
                str(dm.num_workers),
                f"{loader:.0f}",
                "1.0x",
                f"{model:.0f}",
                f"{loader / model:.1f}x",
                *(f"{100 * parts[k] / total:.0f}%" for k in ("decode", "augment", "collate")),
                f"{1e6 * total:.0f}",
            ]
        )
        if isinstance(dm.train_set, ArrayDataset):
            # 10x the batches: at ~10k img/s, --batches alone would be timed over ~50 ms
            on_device = batches_rate(on_device_batches(cfg, device), 10 * args.batches, device)
            rows.append(
                [
                    f"{name} on_device ({device.type})",
                    "0",
                    f"{on_device:.0f}",
                    f"{on_device / loader:.1f}x",
                    f"{model:.0f}",
                    f"{on_device / model:.1f}x",
                    "-",
                    "-",
                    "-",
                    f"{1e6 / on_device:.0f}",
                ]
            )
    print_table(
        f"Data path vs model train step ({args.model}, {args.size}px, batch {args.batch}, augment=standard)",
        [
            "dataset",
            "workers",
            "loader img/s",
            "vs CPU loader",
            "model img/s",
            "loader/model",
            "decode",
            "augment",
            "collate",
            "us/img (1 proc)",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
