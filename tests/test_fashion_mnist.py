"""The IDX DataModule on real files: decoding, splits, subsets and clear errors."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import FMNIST_DIR, compose_train, requires_fmnist, write_idx
from transferlab.data.download import DataNotFoundError
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
