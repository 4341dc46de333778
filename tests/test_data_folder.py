"""The folder DataModule on real image files, in the exact layout of each dataset it serves."""

from __future__ import annotations

import io
import logging
import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import TINY, compose_train, run_script
from tests.image_files import (
    COLOURS,
    write_awkward_good_images,
    write_broken_images,
    write_class_folders,
    write_image,
)
from tests.local_http import serve_folder  # noqa: F401  (the http_folder fixture)
from transferlab.data.datasets import FileDataset
from transferlab.data.download import DataNotFoundError, extract_archive
from transferlab.data.folder import FolderDataModule
from transferlab.data.images import UnreadableImageError
from transferlab.data.kaggle import unpack_all
from transferlab.errors import ConfigError
from transferlab.training.build import build_experiment

BASE = ["model=small_cnn", "pretrained=false", "input.size=32", "data.num_workers=0"]


def datamodule(tmp_path: Path, *overrides: str) -> FolderDataModule:
    cfg = compose_train([*BASE, "data.train_per_class=null", *overrides], output_dir=tmp_path)
    dm = build_experiment(cfg).datamodule
    dm.setup("fit")
    return dm


def val_paths(dm: FolderDataModule) -> set[str]:
    return set(dm.val_set.paths[dm.val_set.indices])


def test_one_folder_is_split_80_20_stratified_and_seeded(tmp_path: Path):
    write_class_folders(tmp_path / "photos", ["bell", "ripped"], 10)
    for i in range(10, 15):  # 15 bell, 10 ripped
        write_image(tmp_path / "photos" / "bell" / f"extra_{i}.png", COLOURS[0], seed=i)
    root = f"data.root={tmp_path / 'photos'}"
    dm = datamodule(tmp_path, "data=image_folder", root)
    assert dm.classes == ["bell", "ripped"]
    assert np.bincount(dm.val_set.targets).tolist() == [3, 2]
    assert dm.split_info == {"train": 20, "val": 5, "test": 5, "unreadable": 0}
    assert val_paths(dm).isdisjoint(dm.train_set.paths[dm.train_set.indices])
    assert val_paths(dm) == val_paths(datamodule(tmp_path, "data=image_folder", root))
    other = datamodule(tmp_path, "data=image_folder", root, "data.split_seed=1")
    assert val_paths(dm) != val_paths(other)
    ninety = datamodule(tmp_path, "data=image_folder", root, "data.val_fraction=0.1")
    assert np.bincount(ninety.val_set.targets).tolist() == [2, 1]


def test_dog_breeds_layout_uses_its_three_splits_and_clean_names(tmp_path: Path):
    breeds = ["001.Affenpinscher", "002.Afghan_hound", "003.Airedale_terrier"]
    for split, n in (("train", 6), ("valid", 2), ("test", 3)):
        write_class_folders(tmp_path / "dogImages" / split, breeds, n)
    dm = datamodule(tmp_path, "data=dog_breeds", f"data.root={tmp_path / 'dogImages'}")
    assert dm.classes == ["Affenpinscher", "Afghan_hound", "Airedale_terrier"]
    assert dm.split_info == {"train": 18, "val": 6, "test": 9, "unreadable": 0}
    assert np.bincount(dm.test_set.targets).tolist() == [3, 3, 3]
    image, label = dm.test_set[len(dm.test_set) - 1]
    assert image.shape == (3, 32, 32) and label == 2
    assert "/test/003.Airedale_terrier/" in dm.test_set.paths[dm.test_set.indices[-1]]


def test_hymenoptera_four_classes_without_test_split_tests_on_val_and_says_so(
    tmp_path: Path, caplog
):
    classes = ["ants", "bees", "cats", "dogs"]
    write_class_folders(tmp_path / "hymenoptera_data" / "train", classes, 4)
    write_class_folders(tmp_path / "hymenoptera_data" / "val", classes, 2)
    with caplog.at_level(logging.WARNING):
        dm = datamodule(tmp_path, "data=hymenoptera", f"data.root={tmp_path / 'hymenoptera_data'}")
    assert dm.classes == classes and dm.num_classes == 4
    assert dm.test_set is dm.val_set and len(dm.val_set) == 8
    assert "testing on the validation split" in caplog.text


def write_lamoda(images: Path, layout: str) -> None:
    """12 blouses (2 of them 600x866) and 10 trousers, as Kaggle ships them or in class folders."""
    for k, (key, n) in enumerate((("bluzy", 12), ("bryuki", 10))):
        for i in range(n):
            name = f"{1000 * k + i:04d}_{key}.jpg"
            path = images / "train" / (name if layout == "kaggle" else f"{key}/{name}")
            write_image(path, COLOURS[k], size=(600, 866) if i >= 10 else (46, 66), seed=i)
    for i in range(5):
        write_image(images / "test" / f"{5000 + i}.jpg", COLOURS[i % 2], size=(46, 66))


@pytest.mark.parametrize("layout", ["kaggle", "class_folders"])
def test_lamoda_unlabeled_test_folder_is_for_prediction_not_metrics(
    tmp_path: Path, caplog, layout: str
):
    images = tmp_path / "lamoda" / "images"
    write_lamoda(images, layout)
    with caplog.at_level(logging.WARNING):
        dm = datamodule(tmp_path, "data=lamoda", f"data.root={images}")
    assert dm.classes == ["blouses", "trousers"]
    assert dm.split_info == {"train": 18, "val": 4, "test": 4, "predict": 5, "unreadable": 0}
    assert np.bincount(dm.val_set.targets).tolist() == [2, 2]
    assert dm.test_set is dm.val_set and "unlabeled" in caplog.text
    x, y = next(iter(dm.predict_dataloader()))
    assert x.shape == (5, 3, 32, 32) and y.tolist() == [-1] * 5


def test_label_pattern_that_misses_some_files_names_them(tmp_path: Path):
    images = tmp_path / "lamoda" / "images"
    write_lamoda(images, "kaggle")
    write_image(images / "train" / "0099_platya.jpg", COLOURS[2])
    with pytest.raises(ValueError, match=r"label_pattern.*does not match \['0099_platya.jpg'\]"):
        datamodule(tmp_path, "data=lamoda", f"data.root={images}")


def test_csv_of_paths_and_labels_keeps_each_item_on_one_side(tmp_path: Path):
    files = write_class_folders(tmp_path / "shop" / "img", ["a", "b"], 12)
    rows = [
        f"img/{p.parent.name}/{p.name},{p.parent.name},{p.parent.name}{i // 3}"
        for i, p in enumerate(files)
    ]
    (tmp_path / "shop" / "labels.csv").write_text("path,label,item\n" + "\n".join(rows) + "\n")
    dm = datamodule(
        tmp_path,
        "data=image_folder",
        f"data.root={tmp_path / 'shop'}",
        "data.csv=labels.csv",
        "data.group_column=item",
        "data.val_fraction=0.25",
    )
    item = {str(p.resolve()): r.rsplit(",", 1)[1] for p, r in zip(files, rows, strict=True)}
    train_items = {item[p] for p in dm.train_set.paths[dm.train_set.indices]}
    assert train_items.isdisjoint(item[p] for p in val_paths(dm))
    assert set(dm.val_set.targets) == {0, 1} and len(dm.val_set) == 6  # 2 items of 3 shots


def test_csv_without_the_named_column_says_which_columns_exist(tmp_path: Path):
    write_class_folders(tmp_path / "shop", ["a"], 1)
    (tmp_path / "shop" / "labels.csv").write_text("file,label\na/a_0.jpg,a\n")
    with pytest.raises(ValueError, match=r"labels.csv: needs columns path, label.*has file, label"):
        datamodule(
            tmp_path, "data=image_folder", f"data.root={tmp_path / 'shop'}", "data.csv=labels.csv"
        )


def test_group_pattern_keeps_near_duplicate_shots_together(tmp_path: Path):
    for k, name in enumerate(["blouses", "trousers"]):
        for item in range(8):
            for shot in range(3):
                write_image(
                    tmp_path / "x" / name / f"{name}{item}_{shot}.jpg", COLOURS[k], seed=shot
                )
    dm = datamodule(
        tmp_path,
        "data=image_folder",
        f"data.root={tmp_path / 'x'}",
        "data.group_pattern='^(.+)_\\d+\\.jpg$'",
    )
    item = lambda p: Path(p).name.rsplit("_", 1)[0]  # noqa: E731
    train_items = {item(p) for p in dm.train_set.paths[dm.train_set.indices]}
    assert train_items.isdisjoint(item(p) for p in val_paths(dm))
    assert len(dm.val_set) % 3 == 0 and set(dm.val_set.targets) == {0, 1}


def test_upper_case_extensions_and_awkward_modes_are_read_as_rgb(tmp_path: Path):
    write_class_folders(tmp_path / "x", ["a", "b"], 3, suffix=".JPG")
    write_class_folders(tmp_path / "x", ["b"], 3, suffix=".PNG")
    good = write_awkward_good_images(tmp_path / "x" / "a", (200, 30, 30))
    dm = datamodule(
        tmp_path, "data=image_folder", f"data.root={tmp_path / 'x'}", "data.val_fraction=0.1"
    )
    assert len(dm.train_set) + len(dm.val_set) == 14 and dm.unreadable == {}
    paths, labels = dm.train_set.paths, dm.train_set.labels
    everything = FileDataset(paths, labels, np.arange(len(paths)), dm.train_set.transform)
    raw = {Path(everything.paths[i]).name: everything.raw(i) for i in range(len(everything))}
    assert all(raw[p.name].ndim == 3 and raw[p.name].shape[2] == 3 for p in good)
    assert raw["rotated.JPG"].shape == (36, 28, 3)  # EXIF orientation 6 applied: 36x28 stands up
    assert raw["rgba.png"][0, 0].tolist() == [200, 30, 30]
    assert abs(int(raw["grey16.png"][0, 0, 0]) - 155) <= 1  # 40000 of 65535, not stretched
    assert abs(int(raw["cmyk.jpg"][0, 0, 0]) - 200) < 12
    batch = torch.stack([everything[i][0] for i in range(len(everything))])
    assert batch.shape == (14, 3, 32, 32) and torch.isfinite(batch).all()


def test_broken_files_are_listed_once_and_left_out_or_stop_the_run(tmp_path: Path, caplog):
    write_class_folders(tmp_path / "x", ["a", "b"], 5)
    broken = write_broken_images(tmp_path / "x" / "b")
    root = f"data.root={tmp_path / 'x'}"
    with caplog.at_level(logging.WARNING):
        dm = datamodule(tmp_path, "data=image_folder", root)
    assert sorted(dm.unreadable) == sorted(broken) and dm.split_info["unreadable"] == 3
    assert len(dm.train_set) + len(dm.val_set) == 10
    for path in broken:
        assert caplog.text.count(str(path)) == 1
    assert (
        "empty file" in caplog.text and "truncated" in caplog.text and "not an image" in caplog.text
    )
    with pytest.raises(
        UnreadableImageError, match=r"3 of 13 images cannot be read.*bad_images=skip"
    ):
        datamodule(tmp_path, "data=image_folder", root, "data.bad_images=error")


def test_decompression_bomb_is_refused(tmp_path: Path):
    write_class_folders(tmp_path / "x", ["a", "b"], 3)
    from PIL import Image

    Image.new("1", (9000, 8000)).save(tmp_path / "x" / "a" / "bomb.png")  # 72 Mpx, tiny file
    dm = datamodule(tmp_path, "data=image_folder", f"data.root={tmp_path / 'x'}")
    assert "decompression bomb" in dm.unreadable[tmp_path / "x" / "a" / "bomb.png"]


def test_missing_folder_names_the_option(tmp_path: Path):
    with pytest.raises(DataNotFoundError, match=r"nope not found; set data.root"):
        datamodule(tmp_path, "data=image_folder", f"data.root={tmp_path / 'nope'}")


def test_lamoda_without_kaggle_credentials_explains_how(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "no-kaggle"))
    for var in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    cfg = compose_train(
        [*BASE, f"paths.data_dir={tmp_path / 'data'}", "data=lamoda"], output_dir=tmp_path
    )
    with pytest.raises(DataNotFoundError) as err:
        build_experiment(cfg)
    message = str(err.value)
    assert str(tmp_path / "data" / "lamoda" / "images") in message
    assert "kaggle.json" in message and "lamoda-images-classification/rules" in message


def test_hymenoptera_zip_is_fetched_and_unpacked_when_missing(tmp_path: Path, http_folder):
    served, url = http_folder
    source = tmp_path / "src" / "hymenoptera_data"
    write_class_folders(source / "train", ["ants", "bees"], 3)
    write_class_folders(source / "val", ["ants", "bees"], 1)
    shutil.make_archive(str(served / "hymenoptera_data"), "zip", tmp_path / "src")
    dm = datamodule(
        tmp_path,
        "data=hymenoptera",
        f"paths.data_dir={tmp_path / 'data'}",
        f"data.url={url}/hymenoptera_data.zip",
    )
    assert dm.split_info == {"train": 6, "val": 2, "test": 2, "unreadable": 0}
    assert (tmp_path / "data" / "hymenoptera_data" / "train" / "ants").is_dir()


def test_dataset_yamls_share_one_class_per_format():
    targets = {}
    for name in ("cifar10", "lamoda", "dog_breeds", "hymenoptera", "image_folder", "fashion_mnist"):
        cfg = compose_train([f"data={name}", "data.root=/nowhere"])
        assert cfg.data.name == name
        targets[name] = cfg.data._target_
    assert set(targets.values()) == {
        "transferlab.data.cifar.CifarDataModule",
        "transferlab.data.folder.FolderDataModule",
        "transferlab.data.idx.IdxDataModule",
    }
    assert compose_train(["data=lamoda"]).data.val_fraction == 0.2


def test_competition_zips_are_unpacked_including_nested_ones(tmp_path: Path):
    inner = tmp_path / "build" / "images" / "train"
    write_image(inner / "0001_bluzy.jpg", COLOURS[0])
    shutil.make_archive(str(tmp_path / "stage" / "images"), "zip", tmp_path / "build")
    target = tmp_path / "lamoda"
    shutil.make_archive(str(target / "lamoda-images-classification"), "zip", tmp_path / "stage")
    unpack_all(target)
    assert (target / "images" / "train" / "0001_bluzy.jpg").is_file()


def test_a_tar_member_escaping_the_target_is_refused_before_anything_is_written(tmp_path: Path):
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in ("data/ok.txt", "../escaped.txt"):
            member = tarfile.TarInfo(name)
            member.size = 2
            tar.addfile(member, io.BytesIO(b"hi"))
    target = tmp_path / "target"
    with pytest.raises(DataNotFoundError, match=r"evil.tar.gz: '../escaped.txt' .*outside"):
        extract_archive(archive, target)
    assert not (tmp_path / "escaped.txt").exists() and not (target / "data").exists()


def test_a_zip_member_escaping_the_target_is_refused(tmp_path: Path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../escaped.txt", "hi")
    with pytest.raises(
        DataNotFoundError, match=r"member '../escaped.txt' would be written outside"
    ):
        extract_archive(archive, tmp_path / "target")
    assert not (tmp_path / "escaped.txt").exists()


def test_a_class_left_without_training_images_is_refused(tmp_path: Path):
    write_class_folders(tmp_path / "x", ["a", "b"], 5)
    write_broken_images(tmp_path / "x" / "c")  # every file of class c is unreadable
    root = f"data.root={tmp_path / 'x'}"
    with pytest.raises(ConfigError, match=r"no training images for class 'c' .*unreadable"):
        datamodule(tmp_path, "data=image_folder", root)
    write_class_folders(tmp_path / "y", ["a", "b"], 5)
    write_class_folders(tmp_path / "y", ["a", "b", "lonely"], 1)  # lonely has one image
    with pytest.raises(ConfigError, match=r"class 'lonely' .*lower data.val_fraction"):
        datamodule(
            tmp_path, "data=image_folder", f"data.root={tmp_path / 'y'}", "data.val_fraction=0.9"
        )


@pytest.mark.slow
def test_train_py_names_the_class_without_training_images_in_one_line(tmp_path: Path):
    write_class_folders(tmp_path / "x", ["a", "b"], 5)
    write_broken_images(tmp_path / "x" / "c")
    args = [*TINY, "data=image_folder", f"data.root={tmp_path / 'x'}", "model=small_cnn"]
    result = run_script(
        "train.py", [*args, "pretrained=false", f"hydra.run.dir={tmp_path / 'r'}"], tmp_path
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith(f"error: {tmp_path / 'x'}: no training images for class 'c'")
    )
    assert "Traceback" not in result.stderr
