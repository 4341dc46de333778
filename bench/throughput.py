"""Model train-step throughput by precision, memory format and torch.compile, on synthetic batches
already on the device (the upper bound the data path has to feed).

Compared with timm's published train numbers (RTX 3090, AMP, channels_last): resnet18 3482 img/s,
resnet50 1218 img/s. On CPU use tiny settings to check the script: --size 32 --batch 8 --steps 2.

    python bench/throughput.py --models resnet18 resnet50 efficientnet_b0 --size 224 --batch 256
"""

from __future__ import annotations

import argparse
import time

import timm
import torch
import torch.nn.functional as F

from bench.common import print_table, sync

TIMM_3090 = {"resnet18": 3482, "resnet50": 1218}  # img/s, timm's benchmark table


def train_rate(
    name: str,
    size: int,
    batch: int,
    steps: int,
    bf16: bool,
    channels_last: bool,
    compile: bool,
    device: torch.device,
) -> float:
    model = timm.create_model(name, num_classes=1000).to(device).train()
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    step_model = torch.compile(model) if compile else model
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, size, size, device=device).to(memory_format=memory_format)
    y = torch.randint(0, 1000, (batch,), device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    warmup = 3 if compile else 2
    for i in range(warmup + steps):
        if i == warmup:
            sync(device)
            start = time.perf_counter()
        with autocast:
            loss = F.cross_entropy(step_model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    sync(device)
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=["resnet18", "resnet50", "efficientnet_b0"])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    variants = [
        ("fp32", False, False, False),
        ("fp32 + channels_last", False, True, False),
        ("bf16", True, False, False),
        ("bf16 + channels_last", True, True, False),
    ]
    if not args.no_compile:
        variants.append(("bf16 + channels_last + compile", True, True, True))
    rows = []
    for name in args.models:
        base = None
        for label, bf16, cl, comp in variants:
            rate = train_rate(name, args.size, args.batch, args.steps, bf16, cl, comp, device)
            base = base or rate
            ref = TIMM_3090.get(name)
            rows.append(
                [
                    name,
                    label,
                    f"{rate:.0f}",
                    f"{rate / base:.2f}x",
                    f"{rate / ref:.2f}" if ref else "-",
                ]
            )
    print_table(
        f"Train-step throughput, {args.size}px, batch {args.batch}, synthetic data on {device.type}",
        ["model", "variant", "img/s", "vs fp32", "vs timm 3090"],
        rows,
    )


if __name__ == "__main__":
    main()
