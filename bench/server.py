"""A real serve.py on 127.0.0.1 for the serving benchmark and tests: start it, watch its memory.

Runs as a user would: a subprocess with its own TMPDIR, so the temp files it keeps for uploads
can be counted, and /proc gives its peak memory.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.common import ROOT

HOST = "127.0.0.1"  # loopback only
MB = 1024 * 1024
TINY_RUN = [  # train.py: a small_cnn at 32 px after two steps; the bench measures serving
    "model=small_cnn",
    "pretrained=false",
    "input.size=32",
    "data.train_per_class=8",
    "data.batch_size=16",
    "data.num_workers=0",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "trainer.accelerator=cpu",
    "logger=none",
]


@dataclass
class Server:
    port: int
    pid: int
    spool: Path  # the server's TMPDIR: where Starlette spools uploads over 1 MB

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def train_tiny(folder: Path) -> Path:
    """A two-step small_cnn run with train.py (Fashion-MNIST); its best.ckpt."""
    run = folder / "run"
    args = [sys.executable, str(ROOT / "train.py"), *TINY_RUN, f"hydra.run.dir={run}"]
    result = subprocess.run(args, cwd=folder, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"train.py failed:\n{result.stderr[-2000:]}")
    return run / "checkpoints" / "best.ckpt"


@contextmanager
def running_server(ckpt: Path, folder: Path, max_upload_mb: int = 10) -> Iterator[Server]:
    """serve.py with ``ckpt`` on 127.0.0.1, its temp files in ``folder/spool``, until exit."""
    port, spool = free_port(), folder / "spool"
    spool.mkdir(parents=True, exist_ok=True)
    args = [f"ckpts=[{ckpt}]", f"port={port}", "examples=0", f"max_upload_mb={max_upload_mb}"]
    with open(folder / "serve.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "serve.py"), *args, f"hydra.run.dir={folder / 'out'}"],
            cwd=folder,
            env={**os.environ, "TMPDIR": str(spool)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        server = Server(port, proc.pid, spool)
        try:
            deadline = time.time() + 300
            while True:
                try:
                    urllib.request.urlopen(f"{server.url}/api/models", timeout=2)
                    break
                except OSError:
                    if proc.poll() is not None or time.time() > deadline:
                        tail = (folder / "serve.log").read_text()[-2000:]
                        raise RuntimeError(f"serve.py did not answer:\n{tail}") from None
                    time.sleep(0.5)
            yield server
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM), in MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM"))
    return kb / 1024


def temp_held_mb(pid: int, spool: Path) -> float:
    """Bytes of the files under ``spool`` that the process holds open, unlinked ones included
    (a rolled-over SpooledTemporaryFile has no name in the folder), in MB."""
    total = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            if os.readlink(fd).startswith(str(spool)):
                total += fd.stat().st_size
        except OSError:  # closed between listing and reading
            pass
    return total / MB
