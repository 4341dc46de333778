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

from tests.conftest import ROOT, requires_fmnist, tiny_checkpoint

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
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.skip(
            "Debian's chromium + chromium-driver are not installed (scripts/setup.sh installs them)"
        )
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
