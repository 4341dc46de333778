"""Peak memory of the run so far, for results.json and the benchmarks."""

from __future__ import annotations

import resource

import torch


def peak_memory() -> dict[str, float | None]:
    """This process's peak resident memory (``ru_maxrss``; loader workers are processes of their
    own) and, with CUDA, the most GPU memory tensors held, both in MB."""
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    gpu_mb = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
    return {"peak_rss_mb": round(rss_mb, 1), "peak_gpu_mb": gpu_mb and round(gpu_mb, 1)}
