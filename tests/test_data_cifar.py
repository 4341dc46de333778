"""The CIFAR DataModule on pickle batches written like the official ones, found, fetched or missing."""

from __future__ import annotations

import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
from torchvision.datasets.utils import calculate_md5

from tests.conftest import compose_train
from tests.local_http import serve_folder  # noqa: F401  (the http_folder fixture)
from transferlab.data.cifar import read_batch
from transferlab.data.download import ChecksumError, DataNotFoundError
from transferlab.training.build import build_experiment

BASE = [
    "data=cifar10",
    "model=small_cnn",
    "pretrained=false",
    "input.size=32",
    "data.train_per_class=null",
]
NAMES = [
    b"airplane",
    b"automobile",
    b"bird",
    b"cat",
    b"deer",
    b"dog",
    b"frog",
    b"horse",
    b"ship",
    b"truck",
]


def write_batch(path: Path, labels: np.ndarray) -> None:
    """A batch as the official files hold it: rows of 1024 R, then G, then B bytes, keys as bytes.

    Image i has red = 10 * label, green = i % 256 and blue = 255 everywhere.
    """
    n = len(labels)
    planes = np.empty((n, 3, 1024), dtype=np.uint8)
    planes[:, 0] = (10 * labels)[:, None]
    planes[:, 1] = (np.arange(n) % 256)[:, None]
    planes[:, 2] = 255
    batch = {
        b"batch_label": path.name.encode(),
        b"labels": [int(v) for v in labels],
        b"data": planes.reshape(n, 3072),
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }
    with open(path, "wb") as f:
        pickle.dump(batch, f, protocol=2)


def write_cifar(folder: Path, per_batch: int = 40, test: int = 30) -> Path:
    batches = folder / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    for b in range(1, 6):
        write_batch(batches / f"data_batch_{b}", np.arange(per_batch) % 10)
    write_batch(batches / "test_batch", np.arange(test) % 10)
    with open(batches / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": NAMES, b"num_vis": 3072}, f, protocol=2)
    return batches


def datamodule(tmp_path: Path, *overrides: str):
    cfg = compose_train([*BASE, *overrides], output_dir=tmp_path)
    dm = build_experiment(cfg).datamodule
    dm.setup("fit")
    return dm


def test_batches_decode_to_upright_rgb_images(tmp_path: Path):
    batches = write_cifar(tmp_path)
    images, labels = read_batch(batches / "data_batch_2")
    assert images.shape == (40, 32, 32, 3) and images.dtype == np.uint8
    assert images[13, 5, 7].tolist() == [10 * 3, 13, 255] and labels[13] == 3


def test_datamodule_finds_batches_in_search_dirs_and_splits_them(tmp_path: Path):
    write_cifar(tmp_path / "found")
    dm = datamodule(tmp_path, f"data.search_dirs=[{tmp_path / 'found'}]", "data.url=null")
    assert dm.classes[0] == "airplane" and dm.num_classes == 10
    assert dm.split_info == {"train": 180, "val": 20, "test": 30}
    assert np.bincount(dm.val_set.targets).tolist() == [2] * 10
    image, label = dm.test_set[4]
    assert tuple(image.shape) == (3, 32, 32) and label == 4


def serve_tarball(tmp_path: Path, served: Path) -> Path:
    """A CIFAR-shaped tarball in the served folder, as the official one is laid out."""
    write_cifar(tmp_path / "official")
    tarball = served / "cifar-10-python.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(tmp_path / "official" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    return tarball


def test_tarball_is_downloaded_checked_and_unpacked_when_online(tmp_path: Path, http_folder):
    served, url = http_folder
    md5 = calculate_md5(serve_tarball(tmp_path, served))
    root = tmp_path / "data" / "cifar10"
    dm = datamodule(
        tmp_path, f"data.root={root}", f"data.url={url}/cifar-10-python.tar.gz", f"data.md5={md5}"
    )
    assert dm.split_info["test"] == 30
    assert (root / "cifar-10-batches-py" / "data_batch_5").is_file()


def test_a_download_with_the_wrong_md5_is_refused_unpacked(tmp_path: Path, http_folder):
    served, url = http_folder
    actual = calculate_md5(serve_tarball(tmp_path, served))
    root = tmp_path / "data" / "cifar10"
    with pytest.raises(ChecksumError) as err:  # the yaml's md5 is the official tarball's
        datamodule(tmp_path, f"data.root={root}", f"data.url={url}/cifar-10-python.tar.gz")
    part = root / "cifar-10-python.tar.gz.part"
    assert str(err.value) == (
        f"{part}: md5 {actual}, expected c58f30108f718f92721af3b95e74349a "
        "(a corrupted or changed download); delete it and retry"
    )
    assert not (root / "cifar-10-python.tar.gz").exists()
    assert not (root / "cifar-10-batches-py").exists()


def test_an_archive_already_there_is_checked_before_unpacking(tmp_path: Path):
    root = tmp_path / "data" / "cifar10"
    root.mkdir(parents=True)
    (root / "cifar-10-python.tar.gz").write_bytes(b"half a tarball")
    url = "http://127.0.0.1:9/cifar-10-python.tar.gz"  # not asked: the file is there
    with pytest.raises(ChecksumError, match=r"cifar-10-python.tar.gz: md5 .*delete it and retry"):
        datamodule(tmp_path, f"data.root={root}", f"data.url={url}")


def test_offline_error_names_where_to_put_the_files(tmp_path: Path):
    root = tmp_path / "data" / "cifar10"
    with pytest.raises(DataNotFoundError) as err:
        datamodule(
            tmp_path, f"data.root={root}", "data.url=http://127.0.0.1:9/cifar-10-python.tar.gz"
        )
    message = str(err.value)
    assert "\n" not in message
    assert f"{root}/cifar-10-batches-py/data_batch_1" in message and "127.0.0.1:9" in message


def test_a_batch_that_would_run_code_is_refused(tmp_path: Path):
    batches = write_cifar(tmp_path)

    class Exploit:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with open(batches / "data_batch_1", "wb") as f:
        pickle.dump({b"data": Exploit(), b"labels": []}, f, protocol=2)
    with pytest.raises(ValueError, match=r"data_batch_1: not a CIFAR python batch.*system"):
        read_batch(batches / "data_batch_1")
