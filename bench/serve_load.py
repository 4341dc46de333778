"""Serving under load: good predictions with and without bad requests arriving alongside.

Starts the real server (serve.py as a subprocess on a free loopback port; a tiny small_cnn is
trained in a temp dir unless ``--ckpt`` is given), warms it up, then runs two phases of
``--seconds`` each. ``good``: ``--clients`` threads post real photos (scikit-image's, PNG and
JPEG, several sizes) back to back. ``good + bad``: the same, plus ``--bad-clients`` threads
posting a text file (must be 400) and 50 MB bodies, announced by Content-Length or sent chunked
(must be 413). Checked: no 5xx and no dropped request; every bad request answered 400/413; the
50 MB bodies not held: the server's peak RSS (VmHWM) and its temp dir (TMPDIR) grow by far less
than 50 MB. Prints p50/p99 latency of good requests and requests/s per phase, with the ratios
``good + bad`` / ``good``, as markdown. Exits 1 when a check fails.

    PYTHONPATH=. python bench/serve_load.py                    # 8 + 2 clients, 20 s per phase
    PYTHONPATH=. python bench/serve_load.py --ckpt <run>/checkpoints/best.ckpt --seconds 60
"""

from __future__ import annotations

import argparse
import functools
import http.client
import io
import select
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from bench.common import print_table
from bench.server import HOST, MB, Server, peak_rss_mb, running_server, temp_held_mb, train_tiny

BIG = 50 * MB  # the oversized body the bad clients send


@dataclass
class Phase:
    seconds: float = 0.0
    good_ms: list[float] = field(default_factory=list)
    bad: dict[str, list[int]] = field(default_factory=dict)  # request kind -> statuses
    sent_mb: dict[str, float] = field(default_factory=dict)  # kind -> most sent before answered
    errors: list[str] = field(default_factory=list)  # 5xx, dropped connections, wrong codes
    rss_growth_mb: float = 0.0  # peak RSS (VmHWM) at the end minus at the start
    spool_peak_mb: float = 0.0


def photos() -> list[tuple[str, bytes]]:
    """scikit-image's sample photos as uploads: full size as JPEG, a quarter size as PNG."""
    from skimage import data

    files = []
    for name in ("astronaut", "coffee", "chelsea", "camera", "rocket"):
        image = Image.fromarray(getattr(data, name)())
        for fmt, scale in (("JPEG", 1), ("PNG", 4)):
            small = image.resize((image.width // scale, image.height // scale))
            buffer = io.BytesIO()
            small.save(buffer, format=fmt)
            files.append((f"{name}.{fmt.lower()}", buffer.getvalue()))
    return files


def multipart(name: str, data: bytes) -> tuple[bytes, str]:
    """(body, content type) of a form with one ``file`` part, as curl -F file=@name sends."""
    boundary = uuid.uuid4().hex
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
    body = f"{head}Content-Type: application/octet-stream\r\n\r\n".encode() + data
    return body + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def post(conn: http.client.HTTPConnection, name: str, data: bytes) -> int:
    body, kind = multipart(name, data)
    conn.request("POST", "/api/predict", body, {"Content-Type": kind})
    response = conn.getresponse()
    response.read()
    return response.status


@functools.cache
def big_request(host: str, chunked: bool) -> bytes:
    """A POST of a 50 MB file, built once: the client's own work stays out of the timings."""
    body, kind = multipart("big.png", b"\0" * BIG)
    if chunked:
        step = 256 * 1024
        frames = (body[i : i + step] for i in range(0, len(body), step))
        body = b"".join(b"%x\r\n%s\r\n" % (len(f), f) for f in frames) + b"0\r\n\r\n"
    size = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(body)}"
    head = f"POST /api/predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: {kind}\r\n{size}\r\n\r\n"
    return head.encode() + body


def post_big(port: int, chunked: bool) -> tuple[int, int]:
    """Post a 50 MB file as a client that stops sending once answered: (status, bytes sent)."""
    request = memoryview(big_request(HOST, chunked))
    sent, step = 0, 256 * 1024
    with socket.create_connection((HOST, port), timeout=60) as s:
        try:
            while sent < len(request) and not select.select([s], [], [], 0)[0]:
                s.sendall(request[sent : sent + step])
                sent += step
        except OSError:  # the server answered and closed while the body was still coming
            pass
        answer = b""
        while b"\r\n" not in answer and (chunk := s.recv(65536)):
            answer += chunk
    return int(answer.split(b" ", 2)[1]), min(sent, len(request))


def good_client(port: int, files: list[tuple[str, bytes]], until: float, phase: Phase, i: int):
    """Post the photos in turn on one keep-alive connection until ``until``."""
    conn = http.client.HTTPConnection(HOST, port, timeout=60)
    while time.perf_counter() < until:
        name, data = files[i % len(files)]
        i += 1
        started = time.perf_counter()
        try:
            status = post(conn, name, data)
        except (OSError, http.client.HTTPException) as err:
            phase.errors.append(f"{name}: no answer ({err!r})")
            conn.close()
            continue
        if status == 200:
            phase.good_ms.append((time.perf_counter() - started) * 1000)
        else:
            phase.errors.append(f"{name}: {status}, expected 200")
    conn.close()


def post_text(port: int) -> tuple[int, int]:
    conn, text = http.client.HTTPConnection(HOST, port, timeout=60), b"not an image\n" * 80
    try:
        return post(conn, "notes.txt", text), len(text)
    finally:
        conn.close()


# kind -> (request giving (status, bytes sent), expected status)
BAD: dict[str, tuple[Callable[[int], tuple[int, int]], int]] = {
    "text file": (post_text, 400),
    "50 MB, Content-Length": (functools.partial(post_big, chunked=False), 413),
    "50 MB, chunked": (functools.partial(post_big, chunked=True), 413),
}


def bad_client(port: int, until: float, phase: Phase, i: int) -> None:
    """Send the bad requests in turn until ``until``; any status but the expected one is an error."""
    kinds = list(BAD)
    while time.perf_counter() < until:
        kind = kinds[i % len(kinds)]
        i += 1
        request, expected = BAD[kind]
        try:
            status, sent = request(port)
        except (OSError, http.client.HTTPException, IndexError, ValueError) as err:
            phase.errors.append(f"{kind}: no answer ({err!r})")
            continue
        phase.bad.setdefault(kind, []).append(status)
        phase.sent_mb[kind] = max(phase.sent_mb.get(kind, 0.0), sent / MB)
        if status != expected:
            phase.errors.append(f"{kind}: {status}, expected {expected}")


def run_phase(
    server: Server, files: list[tuple[str, bytes]], clients: int, bad_clients: int, seconds: float
) -> Phase:
    """``clients`` good and ``bad_clients`` bad threads for ``seconds``, sampling the temp files."""
    phase, stop = Phase(), threading.Event()
    until, rss_before = time.perf_counter() + seconds, peak_rss_mb(server.pid)

    def sample() -> None:
        while not stop.wait(0.005):
            held = temp_held_mb(server.pid, server.spool)
            phase.spool_peak_mb = max(phase.spool_peak_mb, held)

    threads = [threading.Thread(target=sample)]
    threads += [
        threading.Thread(target=good_client, args=(server.port, files, until, phase, 3 * i))
        for i in range(clients)
    ]
    threads += [
        threading.Thread(target=bad_client, args=(server.port, until, phase, i))
        for i in range(bad_clients)
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads[1:]:
        thread.join()
    phase.seconds = time.perf_counter() - started
    stop.set()
    threads[0].join()
    phase.rss_growth_mb = peak_rss_mb(server.pid) - rss_before
    return phase


def measure(server: Server, clients: int, bad_clients: int, seconds: float) -> dict[str, Phase]:
    """A warm-up (not reported), then ``good``, ``good + bad`` and ``good again`` (which shows
    how much the machine itself drifted) for ``seconds`` each."""
    files = photos()
    for chunked in (False, True):
        big_request(HOST, chunked)
    run_phase(server, files, clients, 0, min(seconds, 3))
    return {
        "good": run_phase(server, files, clients, 0, seconds),
        "good + bad": run_phase(server, files, clients, bad_clients, seconds),
        "good again": run_phase(server, files, clients, 0, seconds),
    }


def problems(phases: dict[str, Phase], bad_clients: int) -> list[str]:
    """What broke the rules: errors, a phase without answers, a 50 MB body held by the server
    (memory or temp files grown by a whole body; a chunked body may deliver up to the upload
    limit before its 413, so this assumes bad clients x max_upload_mb < 50)."""
    found = [f"{name}: {error}" for name, phase in phases.items() for error in phase.errors]
    for name, phase in phases.items():
        if not phase.good_ms:
            found.append(f"{name}: no good request was answered")
        for what, mb in (("peak RSS", phase.rss_growth_mb), ("temp files", phase.spool_peak_mb)):
            if mb >= BIG / MB:
                found.append(f"{name}: {what} grew by {mb:.0f} MB: a 50 MB body was held")
    missing = set(BAD) - set(phases["good + bad"].bad)
    if bad_clients and missing:
        found.append(f"good + bad: never sent {sorted(missing)}")
    return found


COLUMNS = [
    "phase",
    "clients",
    "good requests",
    "good req/s",
    "p50 ms",
    "p99 ms",
    "bad requests",
    "peak RSS growth MB",
    "temp files peak MB",
]


def table(phases: dict[str, Phase], clients: int, bad_clients: int) -> list[list[str]]:
    """A row per phase, then the ratios to ``good`` of req/s, p50 and p99."""
    rows, stats = [], {}
    for name, phase in phases.items():
        ms = phase.good_ms or [np.nan]
        stats[name] = (len(phase.good_ms) / phase.seconds, *np.percentile(ms, [50, 99]))
        bad = sum(len(s) for s in phase.bad.values())
        numbers = [f"{v:.1f}" for v in (*stats[name], phase.rss_growth_mb, phase.spool_peak_mb)]
        who = f"{clients} + {bad_clients}" if phase.bad else str(clients)
        rows.append([name, who, str(len(phase.good_ms)), *numbers[:3], str(bad), *numbers[3:]])
    for name in list(phases)[1:]:
        ratios = np.divide(stats[name], stats["good"])
        rows.append([f"{name} / good", "", "", *(f"{r:.2f}" for r in ratios), "", "", ""])
    return rows


def bad_table(phase: Phase) -> list[list[str]]:
    """Per kind of bad request: how many, the answers, and the most MB sent before the answer."""
    return [
        [
            kind,
            str(len(statuses)),
            " ".join(f"{c}x{statuses.count(c)}" for c in sorted(set(statuses))),
            f"{phase.sent_mb[kind]:.1f}",
        ]
        for kind, statuses in phase.bad.items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ckpt", type=Path, help="default: train a tiny small_cnn first")
    parser.add_argument("--clients", type=int, default=8, help="threads posting photos")
    parser.add_argument("--bad-clients", type=int, default=2, help="threads posting bad bodies")
    parser.add_argument("--seconds", type=float, default=20, help="length of each phase")
    parser.add_argument("--max-upload-mb", type=int, default=10, help="serve.py max_upload_mb")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="serve-load-") as tmp:
        ckpt = args.ckpt or train_tiny(Path(tmp))
        with running_server(ckpt.resolve(), Path(tmp), args.max_upload_mb) as server:
            phases = measure(server, args.clients, args.bad_clients, args.seconds)
    title = f"Serving under load, {args.seconds:g} s per phase, max_upload_mb={args.max_upload_mb}"
    print_table(title, COLUMNS, table(phases, args.clients, args.bad_clients))
    columns = ["bad request", "sent", "answers", "most MB sent before the answer"]
    print_table("Bad requests of the good + bad phase", columns, bad_table(phases["good + bad"]))
    found = problems(phases, args.bad_clients)
    for problem in found[:20]:
        print(f"FAILED {problem}")
    if not found:
        print("checks: no 5xx, every bad request 400/413, no 50 MB body held")
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
