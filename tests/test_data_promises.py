"""What docs/reliability.md and docs/datasets.md promise about folder and CSV data, on real files:
a digest per image, symlinks that neither loop nor leak, honest per-class counts, and every data
mistake told in one line with exit code 2 by train.py and eval.py."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import TINY, compose_train, run_script
from tests.image_files import write_broken_images, write_class_folders, write_image
from transferlab.data.folder import FolderDataModule
from transferlab.data.split_record import DataChangedError, check_split, split_record
from transferlab.errors import ConfigError, user_error
from transferlab.sweep.runs import images_per_class
from transferlab.training.build import build_experiment

BASE = ["model=small_cnn", "pretrained=false", "input.size=32", "data.num_workers=0"]
NOBODY = 65534  # as root, chmod 000 blocks nothing: the unreadable cases run as this user


def datamodule(tmp_path: Path, root: Path, *overrides: str) -> FolderDataModule:
    cfg = compose_train(
        [*BASE, "data=image_folder", f"data.root={root}", "data.train_per_class=null", *overrides],
        output_dir=tmp_path / "out",
    )
    dm = build_experiment(cfg).datamodule
    dm.setup("fit")
    return dm


def repaint(path: Path) -> None:
    """Other pixels, same name and format: only a digest notices."""
    Image.new("RGB", (40, 30), (1, 2, 3)).save(path)


def test_folder_and_csv_data_keep_a_digest_per_file_and_name_a_changed_one(tmp_path: Path):
    root = tmp_path / "x"
    write_class_folders(root, ["c0", "c1"], 5, ".png")
    dm = datamodule(tmp_path, root)
    record = split_record(dm)
    assert sorted(record["files"]) == sorted(f"c{k}/c{k}_{i}.png" for k in (0, 1) for i in range(5))
    assert all(len(digest) == 64 for digest in record["files"].values())
    check_split(dm, tmp_path)
    check_split(datamodule(tmp_path, root), tmp_path)  # the same files: silent
    repaint(root / "c0" / "c0_0.png")
    with pytest.raises(DataChangedError, match=r"files modified: 1 \(e.g. c0/c0_0.png\)"):
        check_split(datamodule(tmp_path, root), tmp_path)

    (root / "labels.csv").write_text(
        "path,label\n" + "".join(f"c{k}/c{k}_{i}.png,{k}\n" for k in (0, 1) for i in range(5))
    )
    csv_dm = datamodule(tmp_path, root, "data.csv=labels.csv")
    assert "labels.csv" in split_record(csv_dm)["files"]
    check_split(csv_dm, tmp_path / "csv")
    (root / "labels.csv").write_text(
        (root / "labels.csv").read_text().replace("c0_1.png,0", "c0_1.png,1")
    )
    with pytest.raises(DataChangedError, match=r"files modified: 1 \(e.g. labels.csv\)"):
        check_split(datamodule(tmp_path, root, "data.csv=labels.csv"), tmp_path / "csv")


def test_symlinks_are_followed_once_and_never_into_the_data_itself(tmp_path: Path, caplog):
    root, elsewhere = tmp_path / "x", tmp_path / "elsewhere"
    write_class_folders(root, ["c0", "c1"], 4)
    write_class_folders(elsewhere, ["c2", "more"], 3)
    (root / "c2").symlink_to(elsewhere / "c2")  # a class kept outside the data: followed
    (root / "c0" / "more").symlink_to(elsewhere / "more")  # a linked sub-folder: followed
    (root / "c0" / "again").symlink_to(root / "c0")  # a loop: listed once, and said so
    with caplog.at_level(logging.WARNING):
        dm = datamodule(tmp_path, root)
    assert dm.classes == ["c0", "c1", "c2"]
    assert len(dm.train_set) + len(dm.val_set) == 7 + 4 + 3
    assert "c0/again: links to a folder already listed" in caplog.text

    (root / "loop").symlink_to(".")
    with pytest.raises(ConfigError, match=r"x/loop: a symlink to .*which holds the class folders"):
        datamodule(tmp_path, root)
    (root / "loop").unlink()
    (root / "c3").symlink_to(root / "c1")
    with pytest.raises(ConfigError, match=r"x/c3: a symlink to .*inside the data folder"):
        datamodule(tmp_path, root)


def test_train_per_class_above_a_class_warns_once_and_counts_what_trains(tmp_path: Path, caplog):
    root = tmp_path / "x"
    write_class_folders(root, ["big", "small"], 10)
    for path in sorted((root / "small").iterdir())[3:]:
        path.unlink()  # small: 3 images, 2 of them left to train on after validation takes 1
    with caplog.at_level(logging.WARNING):
        dm = datamodule(tmp_path, root, "data.train_per_class=5", "data.val_fraction=0.2")
    assert dm.train_counts == {"big": 5, "small": 2}
    assert caplog.text.count("data.train_per_class=5: 1 of 2 classes have fewer") == 1
    assert "small (2)" in caplog.text and "big (" not in caplog.text
    assert (
        images_per_class({"train_per_class": 5, "train_images_per_class": dm.train_counts}) == 3.5
    )
    for bad in (0, -3):
        with pytest.raises(ConfigError, match=rf"data.train_per_class={bad}: .*null: all"):
            FolderDataModule(str(root), train_per_class=bad)


def test_csv_short_row_and_non_utf8_name_the_line(tmp_path: Path):
    root = tmp_path / "x"
    write_class_folders(root, ["c0", "c1"], 3)
    (root / "short.csv").write_text("path,label\nc0/c0_0.jpg,c0\nc0/c0_1.jpg\n")
    with pytest.raises(ConfigError, match=r"short.csv, line 3: no label value \(the row has 1 of"):
        datamodule(tmp_path, root, "data.csv=short.csv")
    (root / "latin1.csv").write_bytes("path,label\nc0/c0_0.jpg,caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1.csv, line 2: not UTF-8 \(byte 0xe9\)"):
        datamodule(tmp_path, root, "data.csv=latin1.csv")


# --- what a user sees: the line train.py prints, and train.py / eval.py as subprocesses ---------


def data_case(base: Path, name: str) -> tuple[list[str], str]:
    """Writes the data of case ``name`` under ``base``; returns its overrides and the start of
    the line the user must see."""
    root = base / name
    expected = {
        "empty": f"{root}: no images found",
        "missing": f"image_folder: {root} not found",
        "val_class": f"{root}: val has classes ['c9'] that train has not",
        "bad_image": "image_folder: 3 of 11 images cannot be read",
        "short_row": f"{root}/l.csv, line 3: no label value",
        "latin1": f"{root}/l.csv, line 3: not UTF-8 (byte 0xe9)",
        "loop": f"{root}/loop: a symlink to {root}, which holds the class folders",
        "root_denied": f"permission denied: {root}; ",
        "class_denied": f"permission denied: {root}/c1; ",
        "subfolder_denied": f"permission denied: {root}/c1/sub; ",
    }[name]
    args = ["data=image_folder", f"data.root={root}"]
    if name == "empty":
        root.mkdir()
    elif name != "missing":
        write_class_folders(root / "train" if name == "val_class" else root, ["c0", "c1"], 4)
    if name == "val_class":
        write_class_folders(root / "val", ["c0", "c9"], 1)
    elif name == "bad_image":
        write_broken_images(root / "c1")
        args.append("data.bad_images=error")
    elif name in ("short_row", "latin1"):
        row = "c1/c1_0.jpg\n" if name == "short_row" else "c1/c1_0.jpg,caf\xe9\n"
        (root / "l.csv").write_bytes(f"path,label\nc0/c0_0.jpg,c0\n{row}".encode("latin-1"))
        args.append("data.csv=l.csv")
    elif name == "loop":
        (root / "loop").symlink_to(".")
    elif name.endswith("denied"):
        write_image(root / "c1" / "sub" / "x.jpg", (0, 0, 0))
    return args, f"error: {expected}"


@contextlib.contextmanager
def unreadable(path: Path) -> Iterator[None]:
    """``path`` really unreadable: chmod 000, and as root (whom that does not stop) this process
    runs as nobody meanwhile. A subprocess as nobody cannot start: the venv's python lies in
    /root."""
    path.chmod(0)
    as_root = os.geteuid() == 0
    if as_root:
        os.setegid(NOBODY)
        os.seteuid(NOBODY)
    try:
        yield
    finally:
        if as_root:
            os.seteuid(0)
            os.setegid(0)
        path.chmod(0o755)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder nobody may enter (pytest's tmp_path is root's alone), removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="promises-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder)


@pytest.mark.parametrize("name", ["empty", "val_class", "short_row"])
def test_data_mistakes_become_the_one_line_train_py_prints(tmp_path: Path, name: str):
    args, line = data_case(tmp_path, name)
    with pytest.raises(ConfigError) as err:
        datamodule(tmp_path, tmp_path / name, *args[2:])
    assert f"error: {user_error(err.value)}".startswith(line), str(err.value)


@pytest.mark.parametrize("name", ["root_denied", "class_denied", "subfolder_denied"])
def test_an_unreadable_folder_is_named_not_taken_for_an_empty_one(shared_dir: Path, name: str):
    line = data_case(shared_dir, name)[1]
    root = shared_dir / name
    denied = {"root_denied": root, "class_denied": root / "c1"}.get(name, root / "c1" / "sub")
    dm = FolderDataModule(str(root))
    with unreadable(denied), pytest.raises(ConfigError) as err:
        dm.prepare_data()  # lists the files: what build_experiment asks first, for the classes
    assert f"error: {user_error(err.value)}".startswith(line), str(err.value)
    assert dm.classes == ["c0", "c1"]  # readable again: the same folder lists fine


@pytest.mark.slow
def test_data_mistakes_are_one_line_and_exit_2_from_train_py(tmp_path: Path):
    """One case per kind of raise (data not found, bad image, CSV, symlink), two at a time:
    each is seconds, mostly importing torch; the rest are checked in-process above."""
    names = ["missing", "bad_image", "latin1", "loop"]
    cases = {name: data_case(tmp_path, name) for name in names}

    def run(name: str) -> subprocess.CompletedProcess:
        args = [*TINY, *BASE, *cases[name][0], "callbacks.progress_bar=null"]
        return run_script(
            "train.py", [*args, f"hydra.run.dir={tmp_path / 'runs' / name}"], tmp_path
        )

    with ThreadPoolExecutor(2) as pool:
        results = dict(zip(names, pool.map(run, names), strict=True))
    for name, result in results.items():
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2, f"{name}: {result.stderr[-2000:]}"
        assert lines[-1].startswith(cases[name][1]), f"{name}: {lines[-3:]}"
        assert "Traceback" not in result.stderr, name
        assert not (tmp_path / "runs" / name / "checkpoints").exists(), name


@pytest.mark.slow
def test_a_repainted_image_stops_eval_and_results_count_what_trained(tmp_path: Path):
    root = tmp_path / "x"
    write_class_folders(root, ["c0", "c1"], 6, ".png")
    for path in sorted((root / "c1").iterdir())[3:]:
        path.unlink()  # c1: 3 images, 2 to train on
    run_dir = tmp_path / "run"
    args = [*TINY, *BASE, "data=image_folder", f"data.root={root}", "data.train_per_class=4"]
    args += ["callbacks.progress_bar=null", f"hydra.run.dir={run_dir}"]
    trained = run_script("train.py", args, tmp_path)
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert (trained.stdout + trained.stderr).count("data.train_per_class=4: 1 of 2 classes") == 1
    results = json.loads((run_dir / "results.json").read_text())
    assert results["train_images_per_class"] == {"c0": 4, "c1": 2}
    assert images_per_class(results) == 3.0  # what the sweep report plots, not the 4 asked for
    stored = json.loads((run_dir / "split.json").read_text())["files"]
    assert len(stored) == 9 and "c0/c0_0.png" in stored

    repaint(root / "c0" / "c0_0.png")
    ckpt = f"ckpt_path={run_dir}/checkpoints/best.ckpt"
    evaluated = run_script("eval.py", [ckpt, f"hydra.run.dir={tmp_path / 'eval'}"], tmp_path)
    assert evaluated.returncode == 2, evaluated.stderr[-2000:]
    line = evaluated.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: data under {root} changed since {run_dir}/split.json")
    assert "files modified: 1 (e.g. c0/c0_0.png)" in line
