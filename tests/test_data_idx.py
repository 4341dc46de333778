"""The IDX DataModule on real files: decoding, splits, subsets and clear errors."""

from __future__ import annotations

import gzip
import hashlib
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import FMNIST_DIR, compose_train, requires_fmnist, write_idx
from tests.local_http import serve_folder  # noqa: F401  (the http_folder fixture)
from transferlab.data.download import ChecksumError, DataNotFoundError
from transferlab.data.idx import read_idx
from transferlab.training.build import build_experiment


def test_read_idx_roundtrip(tmp_path: Path):
    array = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", array)
    assert np.array_equal(read_idx(tmp_path / "a.gz"), array)


def test_truncated_idx_names_the_file(tmp_path: Path):
    write_idx(tmp_path / "a.gz", np.zeros((5, 4, 4)))
    data = gzip.decompress((tmp_path / "a.gz").read_bytes())[:-10]
    (tmp_path / "b").write_bytes(data)
    with pytest.raises(ValueError, match=r"b: truncated"):
        read_idx(tmp_path / "b")


def test_datamodule_splits_and_subsets(idx_dir: Path, tmp_path: Path):
    cfg = compose_train(
        [
            f"data.search_dirs=[{idx_dir}]",
            "data.url=null",
            "data.val_fraction=0.2",
            "data.train_per_class=5",
            "model=small_cnn",
            "pretrained=false",
            "input.size=32",
        ],
        output_dir=tmp_path,
    )
    exp = build_experiment(cfg)
    dm = exp.datamodule
    dm.setup("fit")
    assert dm.num_classes == 10
    assert dm.split_info == {"train": 50, "val": 40, "test": 60}
    image, label = dm.train_set[0]
    assert tuple(image.shape) == (3, 32, 32) and 0 <= label < 10
    train_labels = [dm.train_set[i][1] for i in range(len(dm.train_set))]
    assert np.bincount(train_labels).tolist() == [5] * 10
    assert set(dm.train_set.indices).isdisjoint(dm.val_set.indices)


def test_missing_data_says_where_it_looked_and_how_to_fix(tmp_path: Path):
    cfg = compose_train(
        [
            f"data.search_dirs=[{tmp_path / 'nowhere'}]",
            f"data.root={tmp_path / 'root'}",
            "data.url=http://127.0.0.1:9/",
            "model=small_cnn",
            "pretrained=false",
        ],
        output_dir=tmp_path,
    )
    exp = build_experiment(cfg)
    with pytest.raises(DataNotFoundError) as err:
        exp.datamodule.prepare_data()
    message = str(err.value)
    assert str(tmp_path / "nowhere") in message and str(tmp_path / "root") in message
    assert "127.0.0.1:9" in message


def idx_datamodule(tmp_path: Path, url: str, *overrides: str):
    cfg = compose_train(
        [
            "data.search_dirs=[]",
            f"data.root={tmp_path / 'root'}",
            f"data.url={url}",
            "model=small_cnn",
            "pretrained=false",
            *overrides,
        ],
        output_dir=tmp_path,
    )
    return build_experiment(cfg).datamodule


def test_idx_files_are_downloaded_when_missing(idx_dir: Path, tmp_path: Path, http_folder):
    served, url = http_folder
    shutil.copytree(idx_dir, served, dirs_exist_ok=True)
    dm = idx_datamodule(tmp_path, url, "data.md5=null")  # tiny stand-ins: no official md5
    dm.prepare_data()
    assert dm.locate()["test_labels"] == tmp_path / "root" / "t10k-labels-idx1-ubyte.gz"


def test_a_download_that_is_not_the_official_file_is_refused(
    idx_dir: Path, tmp_path: Path, http_folder
):
    served, url = http_folder
    shutil.copytree(idx_dir, served, dirs_exist_ok=True)
    with pytest.raises(ChecksumError) as err:
        idx_datamodule(tmp_path, url).prepare_data()
    part = tmp_path / "root" / "train-images-idx3-ubyte.gz.part"
    assert str(err.value).startswith(f"{part}: md5 ")
    assert str(err.value).endswith(
        ", expected 8d4fb7e6c68d591d4c3dfef9ec88bf0d (a corrupted or changed download); "
        "delete it and retry"
    )
    assert not (tmp_path / "root" / "train-images-idx3-ubyte.gz").exists()


@requires_fmnist
def test_the_yaml_md5s_are_the_official_downloads():
    """Debian re-gzipped the official files (no file name, its own mtime; the same deflate
    stream): given back the original gzip header, each has the md5 the yaml states."""
    data = compose_train([]).data
    mtimes = {"train": 1504176606, "t10k": 1504176627}  # 2017-08-31, Zalando's gzip run
    for key, name in data.files.items():
        debian = (FMNIST_DIR / name).read_bytes()
        assert debian[3] == 0, name  # a bare 10-byte header: the deflate stream follows
        # gzip magic, deflate, FNAME flag, mtime, no extra flags, Unix; then the file name
        mtime = struct.pack("<I", mtimes[name.split("-")[0]])
        header = b"\x1f\x8b\x08\x08" + mtime + b"\x00\x03" + name.removesuffix(".gz").encode()
        official = header + b"\x00" + debian[10:]
        assert hashlib.md5(official).hexdigest() == data.md5[key], name


@requires_fmnist
def test_real_fashion_mnist_is_found_in_the_debian_path(tmp_path: Path):
    cfg = compose_train(
        ["experiment=none", "model=small_cnn", "pretrained=false", "input.size=28"],
        output_dir=tmp_path,
    )
    dm = build_experiment(cfg).datamodule
    dm.setup("fit")
    assert dm.split_info == {"train": 54000, "val": 6000, "test": 10000}
    assert str(FMNIST_DIR) in str(dm.locate()["train_images"])
