"""The web page and HTTP API, served for real on localhost by serve.py, with two checkpoints."""

from __future__ import annotations

import io
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import ROOT, real_part_missing, requires_fmnist, tiny_checkpoint

pytestmark = [pytest.mark.slow, requires_fmnist]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    ckpts = [tiny_checkpoint(tmp, "small_cnn"), tiny_checkpoint(tmp, "resnet18")]
    port = free_port()
    log = open(tmp / "serve.log", "w")  # noqa: SIM115  (open for the server's whole life)
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "serve.py"),
            f"ckpts=[{ckpts[0]},{ckpts[1]}]",
            f"port={port}",
            "max_upload_mb=1",
            "examples=4",
            f"hydra.run.dir={tmp / 'out'}",
        ],
        cwd=tmp,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"{url}/api/models", timeout=2)
                break
            except OSError:
                assert proc.poll() is None, (tmp / "serve.log").read_text()[-3000:]
                time.sleep(0.5)
        yield url, tmp
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def post_file(url: str, name: str, data: bytes) -> tuple[int, dict]:
    """A real multipart/form-data POST of one file, as curl -F file=@name would send."""
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        f"{url}/api/predict", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_api_answers_for_both_models(server):
    url, _ = server
    status, answer = post_file(url, "shirt.png", png_bytes(Image.new("L", (28, 28), 128)))
    assert status == 200
    names = [m["model"] for m in answer["models"]]
    assert names == ["transferlab_smallcnn (scratch)", "resnet18 (scratch)"]
    for model in answer["models"]:
        assert len(model["top"]) == 5
        assert sum(t["probability"] for t in model["top"]) <= 1.0 + 1e-6
        assert model["label"] in {"unknown", *(t["class"] for t in model["top"])}


def test_api_rejects_a_text_file_with_a_reason(server):
    url, _ = server
    status, answer = post_file(url, "notes.jpg", b"this is not an image")
    assert status == 400
    assert answer == {"error": "notes.jpg: not an image (or a format Pillow cannot decode)"}


def test_api_rejects_oversized_uploads_and_bombs(server):
    url, _ = server
    status, answer = post_file(url, "big.png", b"\0" * (1024 * 1024 + 10))
    assert status == 413 and "upload limit" in answer["error"]
    bomb = png_bytes(Image.new("1", (9000, 9000)))  # 81 Mpx in a few kB
    assert len(bomb) < 1024 * 1024
    status, answer = post_file(url, "bomb.png", bomb)
    assert status == 413 and "decompression bomb" in answer["error"]


def test_page_compares_both_models_in_a_real_browser(server, tmp_path: Path):
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        real_part_missing("Debian's chromium + chromium-driver are not installed")
    url, tmp = server
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--window-size=1400,1100",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(
        service=webdriver.ChromeService(shutil.which("chromedriver")), options=options
    )
    try:
        driver.get(url)
        wait = WebDriverWait(driver, 120)
        upload = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#upload input[type=file]"))
        photo = tmp_path / "trouser.png"
        Image.new("L", (28, 28), 30).save(photo)
        upload.send_keys(str(photo))
        verdicts = [
            wait.until(lambda d, i=i: d.find_element(By.ID, f"verdict-{i}").text.strip() or None)
            for i in range(2)
        ]
        labels = [driver.find_element(By.ID, f"label-{i}").text for i in range(2)]
        driver.save_screenshot(str(tmp / "page.png"))
    finally:
        driver.quit()
    for verdict, label in zip(verdicts, labels, strict=True):
        assert verdict.startswith("prediction:") and "confidence" in verdict
        assert sum(name in label for name in ("Trouser", "Bag", "Sneaker", "Coat", "Dress")) >= 3
    assert (tmp / "page.png").stat().st_size > 10_000


def raw_post(url: str, head: bytes, body_chunks, timeout: float = 10.0) -> tuple[int, bytes]:
    """POST by hand on a socket: the headers, then as much of the body as the server takes."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(head)
        try:
            for chunk in body_chunks:
                s.sendall(chunk)
        except OSError:  # the server answered and closed while the body was still coming
            pass
        answer = b""
        while not _complete(answer) and (chunk := s.recv(65536)):
            answer += chunk
    status = int(answer.split(b" ", 2)[1])
    return status, answer


def _complete(answer: bytes) -> bool:
    """A whole HTTP response: its Content-Length of body, or a chunked body's last chunk."""
    head, _, body = answer.partition(b"\r\n\r\n")
    if not _:
        return False
    lines = [line.lower() for line in head.split(b"\r\n")]
    length = [int(line.split(b":", 1)[1]) for line in lines if line.startswith(b"content-length:")]
    return len(body) >= length[0] if length else body.endswith(b"0\r\n\r\n")


def test_a_large_body_is_refused_before_it_is_received(server):
    url, _ = server
    fifty_mb = 50 * 1024 * 1024
    head = (
        f"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
        f"boundary=b\r\nContent-Length: {fifty_mb}\r\n\r\n"
    ).encode()
    started = time.perf_counter()
    status, answer = raw_post(url, head, [b"\0" * 1024])  # 1 kB of the 50 MB announced
    assert status == 413 and b"upload limit" in answer
    assert time.perf_counter() - started < 5  # answered from the header, not after a timeout
    chunked = (
        b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
        b"boundary=b\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    part = b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n\r\n'
    piece = b"\0" * (256 * 1024)
    pieces = [part, *[piece] * 200]  # a real multipart file part of 50 MB, sent without a length
    chunks = (b"%x\r\n%s\r\n" % (len(p), p) for p in pieces)
    status, answer = raw_post(url, chunked, chunks)
    assert status == 413 and b"upload limit" in answer
    status, _ = post_file(url, "shirt.png", png_bytes(Image.new("L", (28, 28), 128)))
    assert status == 200  # and the server still answers
