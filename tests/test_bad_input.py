"""Every bad input of docs/bad_input.md, given to the real CLI: what is refused is one line on
stderr naming the file or option, and exit code 2; what is read anyway says what it did.

The page is written from these runs (``TRANSFERLAB_WRITE_DOCS=1 pytest tests/test_bad_input.py``)
and otherwise checked against them, so it cannot promise what the code does not do. The cases run
through test_docs's fork runner: torch is imported once, each case is still its own process.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from PIL import Image

from tests.conftest import FMNIST_DIR, ROOT, TINY, real_part_missing
from tests.image_files import (
    COLOURS,
    write_awkward_good_images,
    write_broken_images,
    write_class_folders,
    write_image,
)
from tests.test_docs import Runner, user_env
from transferlab.tables import markdown_table

pytestmark = pytest.mark.slow
PAGE = ROOT / "docs" / "bad_input.md"
WRITE = os.environ.get("TRANSFERLAB_WRITE_DOCS") == "1"
OFFLINE = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}  # refused
LOG_PREFIX = re.compile(r"^\[[\d\- :,]+\]\[[\w.]+\]\[\w+\] - ")  # Hydra's "[time][name][LEVEL] - "
CLASSES = ["red", "green"]
READ = (r"^data FolderDataModule: ", r"cannot be read")  # counted, and not called unreadable
LEFT_OUT = (r"cannot be read and are left out", "")


@dataclass
class Case:
    """One bad input: how to make it, the command, and what the user must see."""

    id: str
    input: str  # what is wrong, in the user's words
    command: str  # entry point and its overrides; {tmp}: the case's folder, {run}: a tiny run
    make: Callable[[Path], object] | None = None  # writes the files the case needs into {tmp}
    rc: int = 2
    names: str = ""  # what the error line must name (the file or option); {tmp} filled
    shows: str = r"^error: "  # the line the user sees (searched in stderr, then stdout)
    env: dict[str, str] = field(default_factory=dict)
    absent: str = ""  # a regex no output line may match (a readable image is not "unreadable")
    cut: bool = False  # show only what ``shows`` matched (the rest of the line varies)
    never: str = ""  # a file under {tmp} that must not exist afterwards
    row: tuple[str, str] = ()  # (file under {tmp}, regex): the part of a row it wrote, shown too


@dataclass
class Seen:
    rc: int
    stderr: str
    stdout: str
    line: str  # the line the page shows: the one ``shows`` matched, else stderr's last
    matched: bool
    folder: Path  # where it ran ({tmp})


# --- inputs --------------------------------------------------------------------------------------
def photos(tmp: Path, per_class: int = 5) -> Path:
    write_class_folders(tmp / "photos", CLASSES, per_class, size=(24, 24))
    return tmp / "photos"


def with_file(name: str, write: Callable[[Path], object]) -> Callable[[Path], object]:
    """Class folders with one more file, ``photos/red/<name>``, written by ``write``."""
    return lambda tmp: write(photos(tmp) / "red" / name)


def awkward(name: str) -> Callable[[Path], object]:
    def make(tmp: Path) -> None:
        folder = tmp / "awkward"
        write_awkward_good_images(folder, COLOURS[0])
        shutil.copy(folder / name, photos(tmp) / "red" / name)

    return make


def broken(name: str) -> Callable[[Path], object]:
    def make(tmp: Path) -> None:
        write_broken_images(tmp / "broken")
        shutil.copy(tmp / "broken" / name, photos(tmp) / "red" / name)

    return make


def bomb(path: Path) -> None:
    Image.new("1", (9000, 8000)).save(path)  # 72 Mpx in a tiny file


def dangling(path: Path) -> None:
    path.symlink_to(path.parent / "deleted.jpg")


def picture(path: Path) -> None:
    write_image(path, COLOURS[0], (24, 24))


def text(path: Path) -> None:
    path.write_text("not an image\n")


def loop(tmp: Path) -> None:
    (photos(tmp) / "loop").symlink_to(".")


def no_train_images(tmp: Path) -> None:
    photos(tmp)
    write_broken_images(tmp / "photos" / "blue")


def empty(tmp: Path) -> None:
    (tmp / "photos").mkdir()


def split_folders(tmp: Path) -> None:
    write_class_folders(tmp / "photos" / "train", CLASSES, 4, size=(24, 24))
    write_class_folders(tmp / "photos" / "val", [*CLASSES, "blue"], 2, size=(24, 24))


def csv_file(text: bytes) -> Callable[[Path], object]:
    def make(tmp: Path) -> None:
        photos(tmp)
        (tmp / "photos" / "labels.csv").write_bytes(text)

    return make


CSV_ROWS = "".join(f"{c}/{c}_{i}.jpg,{c}\n" for c in CLASSES for i in range(5))


def non_utf8_names(tmp: Path) -> None:
    photos(tmp)
    write_image(tmp / "photos" / "red" / os.fsdecode(b"caf\xe9.jpg"), COLOURS[0], (24, 24))


def old_checkpoint(tmp: Path) -> None:
    checkpoint = torch.load(tmp.parent / "run" / "checkpoints" / "best.ckpt", weights_only=True)
    checkpoint["transferlab_version"] = "0.1.0"
    (tmp / "old").mkdir()
    torch.save(checkpoint, tmp / "old" / "best.ckpt")


class RunsCode:
    """Unpickled, this would create the file ``ran`` in the working folder."""

    def __reduce__(self):
        return (open, ("ran", "w"))


def code_checkpoint(tmp: Path) -> None:
    (tmp / "evil").mkdir()
    torch.save({"state_dict": {}, "payload": RunsCode()}, tmp / "evil" / "best.ckpt")


# --- the cases -----------------------------------------------------------------------------------
FOLDER = "data=image_folder data.root={tmp}/photos"
SMALL = (
    "model=small_cnn pretrained=false input.size=32 data.num_workers=0 data.train_per_class=null"
    " trainer.max_epochs=1 trainer.limit_train_batches=1 trainer.limit_val_batches=1"
    " trainer.limit_test_batches=1 trainer.accelerator=cpu hydra.run.dir={tmp}/out"
)
TRAIN = f"train.py {FOLDER} {SMALL}"
SURVEY = f"inspect_data.py {FOLDER} data.num_workers=0 hydra.run.dir={{tmp}}/out"

CASES = [
    # typos Hydra refuses while composing, and values the config check refuses
    Case("typo_key", "a typo'd option", "train.py trainer.max_epoch=3", names="trainer.max_epoch"),
    Case(
        "typo_choice",
        "a typo'd choice of a config group",
        "train.py model=resnet19",
        names="model=resnet19",
    ),
    Case("typo_group", "a typo'd config group", "train.py modle=resnet18", names="modle"),
    Case(
        "typo_level",
        "an option without its group",
        "train.py max_epochs=3",
        names="trainer.max_epochs",
    ),
    Case(
        "typo_eval",
        "a typo'd option of eval.py",
        "eval.py ckpt_pth={tmp}/best.ckpt",
        names="ckpt_path",
    ),
    Case("typo_predict", "a typo'd option of predict.py", "predict.py inptu={tmp}", names="input"),
    Case(
        "typo_export",
        "a typo'd option of export.py",
        "export.py parity_image=8",
        names="parity_images",
    ),
    Case("typo_serve", "a typo'd option of serve.py", "serve.py prot=8000", names="port"),
    Case(
        "typo_survey",
        "a typo'd option of inspect_data.py",
        "inspect_data.py samples_per_clas=2",
        names="samples_per_class",
    ),
    Case(
        "bad_grammar",
        "an override Hydra cannot parse",
        "train.py trainer.max_epochs=[",
        names="trainer.max_epochs=[",
    ),
    Case("lr_abc", "a number option given text", "train.py optimizer.lr=abc", names="optimizer.lr"),
    Case(
        "per_class_0",
        "data.train_per_class=0",
        "train.py data.train_per_class=0",
        names="data.train_per_class",
    ),
    Case(
        "per_class_neg",
        "data.train_per_class=-1",
        "train.py data.train_per_class=-1",
        names="data.train_per_class",
    ),
    # checkpoints
    Case("eval_no_ckpt", "eval.py without a checkpoint", "eval.py", names="ckpt_path"),
    Case("serve_no_ckpt", "serve.py without a checkpoint", "serve.py", names="ckpts"),
    Case(
        "missing_ckpt",
        "a checkpoint that does not exist",
        "predict.py ckpt_path=/no/such.ckpt input={tmp}/photos",
        photos,
        names="/no/such.ckpt",
    ),
    Case(
        "code_ckpt",
        "a checkpoint that would run code when loaded",
        "eval.py ckpt_path={tmp}/evil/best.ckpt hydra.run.dir={tmp}/out",
        code_checkpoint,
        names="{tmp}/evil/best.ckpt",
        never="ran",
    ),
    # data
    Case(
        "data_not_found",
        "data.root that does not exist",
        f"{TRAIN.replace('{tmp}/photos', '{tmp}/nope')}",
        names="{tmp}/nope",
    ),
    Case(
        "offline",
        "a dataset to download, offline",
        f"train.py data=dog_breeds {SMALL} paths.data_dir={{tmp}}/data",
        names="{tmp}/data/dogImages",
        env=OFFLINE,
    ),
    Case("empty_folder", "an empty data folder", TRAIN, empty, names="{tmp}/photos"),
    Case(
        "no_train_class",
        "a class whose every image is unreadable",
        TRAIN,
        no_train_images,
        names="blue",
    ),
    Case("val_class_missing", "a val class that train lacks", TRAIN, split_folders, names="blue"),
    Case(
        "per_class_above",
        "data.train_per_class above what a class has",
        f"{SURVEY} data.train_per_class=50",
        photos,
        rc=0,
        shows=r"^data\.train_per_class=50: ",
    ),
    Case(
        "bad_images_error",
        "an unreadable image with data.bad_images=error",
        f"{TRAIN} data.bad_images=error",
        broken("empty.jpg"),
        names="{tmp}/photos",
    ),
    Case(
        "csv_short_row",
        "a CSV row with a missing column",
        f"{TRAIN} data.csv=labels.csv",
        csv_file(f"path,label\n{CSV_ROWS}red/red_0.jpg\n".encode()),
        names="labels.csv",
    ),
    Case(
        "csv_not_utf8",
        "a CSV that is not UTF-8",
        f"{TRAIN} data.csv=labels.csv",
        csv_file(f"path,label\n{CSV_ROWS}red/caf\xe9.jpg,red\n".encode("latin-1")),
        names="labels.csv",
    ),
    Case(
        "symlink_loop", "a symlink loop (photos/loop -> .)", TRAIN, loop, names="{tmp}/photos/loop"
    ),
    # runs and checkpoints (a tiny real run on Fashion-MNIST, trained with data.on_device=true)
    Case(
        "old_ckpt",
        "a checkpoint of another transferlab version",
        "eval.py ckpt_path={tmp}/old/best.ckpt hydra.run.dir={tmp}/out",
        old_checkpoint,
        names="{tmp}/old/best.ckpt",
    ),
    Case(
        "export_on_device",
        "export of a data.on_device=true run",
        "export.py ckpt_path={run}/checkpoints/best.ckpt parity_images=4 hydra.run.dir={tmp}/out",
        rc=0,
        shows=r"^exported \S+model\.onnx \(max \|p_onnx - p_torch\|",  # the number varies
        cut=True,
    ),
    Case(
        "predict_non_utf8",
        "a file name that is not UTF-8, predicted",
        "predict.py ckpt_path={run}/checkpoints/best.ckpt input={tmp}/photos "
        "hydra.run.dir={tmp}/out",
        non_utf8_names,
        rc=0,
        shows=r"images predicted",
        row=("out/predictions.csv", r"^[^,]*caf\\xe9\.jpg"),
    ),
    Case(
        "sweep_job_fails",
        "a sweep job that fails (no ImageNet weights for small_cnn)",
        f"train.py -m {SMALL} pretrained=true hydra.sweep.dir={{tmp}}/sweep",
        rc=0,
        shows=r"WeightsNotFoundError",
    ),
    # the 14 kinds of image file the folder reader meets, through the data survey (it reads the
    # data as train.py does, without training)
    *(
        Case(f"image_{name}", what, SURVEY, make, rc=0, shows=shows, absent=absent)
        for name, what, make, (shows, absent) in [
            ("upper_jpg", "an upper-case .JPG", with_file("x.JPG", picture), READ),
            ("cmyk", "a CMYK JPEG", awkward("cmyk.jpg"), READ),
            ("rgba", "an RGBA PNG", awkward("rgba.png"), READ),
            ("palette", "a palette PNG", awkward("palette.png"), READ),
            ("grey16", "a 16-bit grey PNG", awkward("grey16.png"), READ),
            ("exif", "an EXIF-rotated JPEG", awkward("rotated.JPG"), READ),
            ("empty", "an empty .jpg", broken("empty.jpg"), LEFT_OUT),
            ("truncated", "a truncated JPEG", broken("truncated.jpg"), LEFT_OUT),
            ("text", "a text file named .jpg", broken("notes.jpg"), LEFT_OUT),
            ("bomb", "a decompression bomb (72 Mpx)", with_file("bomb.png", bomb), LEFT_OUT),
            ("dangling", "a dangling symlink", with_file("gone.jpg", dangling), READ),
            ("hidden", "a hidden file", with_file(".hidden.jpg", picture), READ),
            ("not_image", "a file that is not an image (.txt)", with_file("notes.txt", text), READ),
            ("non_utf8", "a file name that is not UTF-8", non_utf8_names, READ),
        ]
    ),
]


# --- running them --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def see(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[Case], Seen]]:
    """``see(case)``: the case run once (cached) in its own folder ``<base>/<id>``, through one
    fork runner; the tiny run ``<base>/run`` is trained first when a case needs it."""
    base, runner, seen = tmp_path_factory.mktemp("bad_input"), Runner(), {}

    def see(case: Case) -> Seen:
        if case.id not in seen:
            if needs_run(case) and not (base / "run").is_dir():
                train_run(runner, base)
            seen[case.id] = run_case(runner, case, base)
        return seen[case.id]

    yield see
    runner.close()


def needs_run(case: Case) -> bool:
    return "{run}" in case.command or case.make is old_checkpoint


def train_run(runner: Runner, base: Path) -> None:
    if not (FMNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        real_part_missing("Debian's dataset-fashion-mnist is not installed")
    args = [*TINY, "model=small_cnn", "pretrained=false", "data.on_device=true"]
    args += ["trainer.limit_train_batches=2", f"hydra.run.dir={base / 'run'}"]
    rc = runner.send(job(["train.py", *args], base, base / "run.log"))
    assert rc == 0, (base / "run.log").read_text()[-3000:]


def job(argv: list[str], cwd: Path, log: Path, stderr: Path | None = None, env=None) -> dict:
    argv = [str(ROOT / argv[0]), *argv[1:]]
    env = {**user_env(cwd), "COLUMNS": "1000", **(env or {})}
    return {"argv": argv, "cwd": str(cwd), "env": env, "log": str(log), "stderr": str(stderr or "")}


def run_case(runner: Runner, case: Case, base: Path) -> Seen:
    tmp = base / case.id
    tmp.mkdir()
    if case.make:
        case.make(tmp)
    argv = shlex.split(fill(case.command, tmp))
    out, err = tmp / "stdout.txt", tmp / "stderr.txt"
    rc = runner.send(job(argv, tmp, out, err, case.env))
    stdout, stderr = out.read_text(errors="replace"), err.read_text(errors="replace")
    line = shown(case, stderr, stdout, tmp)
    if case.row and line:
        file, pattern = case.row
        written = (tmp / file).read_text() if (tmp / file).is_file() else ""
        found = re.search(pattern, written, re.M)
        line = f"{line}; {Path(file).name}: {found[0]}" if found else ""
    last = stderr.strip().splitlines()[-1:] or [""]
    return Seen(rc, stderr, stdout, placeholders(line or last[0], tmp), bool(line), tmp)


def fill(text: str, tmp: Path) -> str:
    return text.replace("{tmp}", str(tmp)).replace("{run}", str(tmp.parent / "run"))


def shown(case: Case, stderr: str, stdout: str, tmp: Path) -> str:
    """The line the user sees, log prefix off; a line ending in ':' with the line it announces."""
    lines = [LOG_PREFIX.sub("", line) for line in [*stderr.splitlines(), *stdout.splitlines()]]
    for i, line in enumerate(lines):
        if found := re.search(case.shows, line):
            if case.cut:
                return f"{found[0]} ..."
            if line.endswith(":") and i + 1 < len(lines):
                line = f"{line} {lines[i + 1].strip()}"
            return line
    return ""


def placeholders(text: str, tmp: Path) -> str:
    return text.replace(str(tmp.parent / "run"), "<run>").replace(str(tmp), "<tmp>")


# --- the tests -----------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input(case: Case, see: Callable[[Case], Seen]):
    seen = see(case)
    output = f"{seen.stderr[-2000:]}\n{seen.stdout[-2000:]}"
    assert seen.rc == case.rc, output
    assert "Traceback" not in seen.stderr, output
    if case.rc == 2:  # refused: one line, the last on stderr, naming the file or option
        errors = [line for line in seen.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and seen.stderr.strip().splitlines()[-1] == errors[0], output
        named = case.names.replace("{tmp}", "<tmp>")
        assert named in seen.line, (named, seen.line)
    assert seen.matched, f"no line matches {case.shows!r}:\n{output}"
    assert not (case.never and (seen.folder / case.never).exists()), f"{case.never} was written"
    if case.absent:
        assert not re.search(case.absent, f"{seen.stderr}\n{seen.stdout}", re.M), output


def page(seen: dict[str, Seen]) -> str:
    rows = [
        (case.input, f"`python {shown_command(case)}`", seen[case.id].line, seen[case.id].rc)
        for case in CASES
    ]
    table = markdown_table(["input", "command", "what you see", "exit code"], rows, right=[3])
    return f"""# Bad input: what you see

Every row is a real run of the command shown, in a scratch folder, by `tests/test_bad_input.py`,
which also writes this page (`TRANSFERLAB_WRITE_DOCS=1 pytest tests/test_bad_input.py`) and fails
while it is stale. Input that cannot work is refused before anything is built or written: one
line on stderr, starting `error:`, naming the file or option and the fix, and exit code 2. Input
that can be used anyway is used, and the run says what it did.

`<tmp>` is the folder the case ran in (`<tmp>/photos`: two classes of five small JPEGs, plus what
the row adds), `<run>` a tiny train.py run on Fashion-MNIST with `data.on_device=true`, and
`<tiny>` the budget `{SMALL.replace("{tmp}", "<tmp>")}`. Image files are shown through
`inspect_data.py`, which reads the data exactly as train.py does.

<!-- generated: by tests/test_bad_input.py -->
{table}
<!-- /generated -->
"""


def shown_command(case: Case) -> str:
    command = case.command.replace(SMALL, "<tiny>")
    return command.replace("{tmp}", "<tmp>").replace("{run}", "<run>")


def test_page_shows_what_the_cases_do(see: Callable[[Case], Seen]):
    text = page({case.id: see(case) for case in CASES})
    if WRITE:  # what happens, also where test_bad_input fails: the page never hides it
        PAGE.write_text(text)
    assert PAGE.is_file() and PAGE.read_text() == text, (
        "docs/bad_input.md is stale: TRANSFERLAB_WRITE_DOCS=1 pytest tests/test_bad_input.py"
    )
