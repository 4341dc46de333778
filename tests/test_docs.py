"""The docs cannot drift: their tables are generated from conf/ and current, and every command
they show is run here, or composed by Hydra and marked as needing a GPU, the network or minutes.

How a command is checked is explained to readers in docs/README.md; this file is the referee.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig

from tests.conftest import CONF, ROOT, TINY, requires_fmnist
from tests.image_files import write_class_folders, write_image

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
ENTRY_POINTS = {
    "train.py",
    "eval.py",
    "predict.py",
    "export.py",
    "serve.py",
    "inspect_data.py",
    "rank.py",
    "audit.py",
}
TRAINING = {"train.py", "inspect_data.py"}  # entry points that get the tiny budget appended
NEEDS = {"gpu", "network", "minutes", "slurm"}
# TINY, at one batch per epoch; and one epoch unless the command's own epochs matter to it.
BUDGET = [o for o in TINY if not o.startswith("trainer.limit_")]
BUDGET += [f"trainer.limit_{split}_batches=1" for split in ("train", "val", "test")]
OWN_EPOCHS = re.compile(r"(?:^|\s)(?:trainer\.max_epochs|finetune)=")  # finetune: unfreeze epochs
PLACEHOLDERS = {  # what a page may write for a path the shared tiny runs fill in
    r"outputs/train/<date>/<time>": "run",
    r"multirun/<date>/<time>": "sweep",
    r"<(?:[\w ]+ )?run>": "run",
}
PLACES_FOR_COMPOSING = {"run": "/runs/tiny", "sweep": "/multirun/tiny"}  # paths need not exist
BLOCK = re.compile(r"^```(?P<lang>\w*)\n(?P<body>.*?)^```", re.S | re.M)
GENERATED = re.compile(r"<!-- generated: .*?<!-- /generated -->", re.S)
FILE_BLOCK = re.compile(r"<!-- file: (?P<path>\S+) -->\n```\w*\n(?P<body>.*?)^```", re.S | re.M)


@dataclass
class Command:
    page: Path
    line: int
    code: str  # the command as shown, without its comment
    needs: set[str] = field(default_factory=set)

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def argv(self) -> list[str]:
        return argv_of(self.code)

    @property
    def entry_point(self) -> str | None:
        argv = self.argv
        if len(argv) > 1 and argv[0] == "python" and argv[1] in ENTRY_POINTS:
            return argv[1]
        return None

    @property
    def recipe(self) -> bool:
        """On a page that adds conf files: run by tests/test_recipes.py, not here."""
        return bool(page_files(self.page))

    @property
    def check(self) -> str:
        """How this command is checked: run, composed (and why not run), or marked."""
        if self.needs:
            how = "composed" if self.entry_point else "marked"
            return f"{how}, needs {', '.join(sorted(self.needs))}"
        if self.recipe:
            return "run by the recipes test"
        return "run" + (" as a server" if self.entry_point == "serve.py" else "")


def argv_of(code: str) -> list[str]:
    """A command's words after any leading VAR=value assignments."""
    words = shlex.split(code)
    while words and re.match(r"^[A-Za-z_]\w*=", words[0]):
        words.pop(0)
    return words


def split_comment(line: str) -> tuple[str, str]:
    """``(command, comment)``: the comment starts at a ``#`` outside quotes, after a space."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].strip(), line[i + 1 :].strip()
    return line.strip(), ""


def page_commands(page: Path) -> Iterator[Command]:
    text = page.read_text()
    for block in BLOCK.finditer(text):
        if block["lang"] != "bash":
            continue
        first = text.count("\n", 0, block.start("body")) + 1
        pending, start = "", first
        for offset, raw in enumerate(block["body"].splitlines()):
            if not pending:
                start = first + offset
            if raw.rstrip().endswith("\\"):
                pending += raw.rstrip()[:-1] + " "
                continue
            line, pending = (pending + raw).strip(), ""
            if not line or line.startswith("#"):
                continue
            code, comment = split_comment(line)
            needs = {
                n.strip() for m in re.findall(r"needs:\s*([\w, ]+)", comment) for n in m.split(",")
            }
            yield Command(page, start, code, {n for n in needs if n})


def docs_commands() -> list[Command]:
    """Every command of the pages, in page order, each shown once (its first appearance)."""
    seen, found = set(), []
    for page in PAGES:
        for command in page_commands(page):
            same = fill(command.code, PLACES_FOR_COMPOSING, strict=False)  # <run> = outputs/...
            if same not in seen:
                seen.add(same)
                found.append(command)
    return found


def page_files(page: Path) -> dict[str, str]:
    """``<!-- file: conf/... -->`` blocks: the files a page tells the reader to add."""
    return {m["path"]: m["body"] for m in FILE_BLOCK.finditer(page.read_text())}


def fill(text: str, places: dict[str, str], strict: bool = True) -> str:
    """The command with its placeholders replaced; an unknown ``<placeholder>`` fails."""
    for pattern, key in PLACEHOLDERS.items():
        text = re.sub(pattern, lambda _, key=key: places[key], text)
    unknown = re.findall(r"<[\w .-]+>", text)
    assert not (strict and unknown), f"unknown placeholder {unknown}, known: {list(PLACEHOLDERS)}"
    return text


def conf_with(files: dict[str, str], folder: Path) -> Path:
    """A copy of conf/ with ``files`` (paths starting with conf/) added."""
    conf = folder / "conf"
    shutil.copytree(CONF, conf)
    for path, body in files.items():
        assert path.startswith("conf/"), f"{path}: a docs file block must add a file under conf/"
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_text(body)
    return conf


# --- composing Hydra commands ---------------------------------------------------------------------
def sweep_jobs(overrides: list[str], params: dict) -> list[list[str]]:
    """Jobs of a sweep (an experiment's params, then the command line's) such that every value of
    every swept key is in one job: as many jobs as the longest list, not their product."""
    parsed = OverridesParser.create().parse_overrides(
        [*(f"{k}={v}" for k, v in params.items()), *overrides]
    )
    columns = [
        [f"{o.get_key_element()}={v}" for v in swept_values(o)]
        if o.is_sweep_override()
        else [f"{o.get_key_element()}={o.get_value_element_as_str()}"]
        for o in {o.get_key_element(): o for o in parsed}.values()
    ]
    choices = [o for o in parsed if not o.is_interval_sweep()]
    assert BasicSweeper.split_arguments(choices, None)  # what Hydra itself accepts
    return [[c[i % len(c)] for c in columns] for i in range(max(map(len, columns), default=1))]


def swept_values(override) -> list:
    """A choice sweep's values; an interval (hparams_search's search space) by its two ends."""
    if override.is_interval_sweep():
        return [override.value().start, override.value().end]
    return list(override.sweep_string_iterator())


def compose_command(argv: list[str], conf: Path) -> list[DictConfig]:
    """Compose an entry point's command as Hydra would (`--cfg job`), each job of a sweep."""
    name, args = argv[1].removesuffix(".py"), argv[2:]
    multirun = any(a in ("-m", "--multirun") for a in args)
    flags = [a for a in args if a.startswith("-") and a not in ("-m", "--multirun")]
    assert not flags, f"flags the test cannot compose: {flags}"
    overrides = [a for a in args if not a.startswith("-")]
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        if not multirun:
            return [compose(name, overrides, return_hydra_config=True)]
        parsed = OverridesParser.create().parse_overrides(overrides)
        fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
        params = compose(name, fixed, return_hydra_config=True).hydra.sweeper.params or {}
        jobs = sweep_jobs(overrides, dict(params))
        return [compose(name, job, return_hydra_config=True) for job in jobs]


def validate_train(cfg: DictConfig) -> None:
    from transferlab.training.validate import validate

    validate(cfg)


COMMANDS = docs_commands()
HYDRA_COMMANDS = [c for c in COMMANDS if c.entry_point]


def test_generated_tables_are_current():
    check = [sys.executable, str(ROOT / "scripts/docs_tables.py"), "--check"]
    result = subprocess.run(check, capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, f"{result.stdout}{result.stderr}: python scripts/docs_tables.py"


def test_every_docs_command_is_run_composed_or_marked():
    assert len(COMMANDS) > 20 and len(HYDRA_COMMANDS) > 10  # the pages were found and parsed
    for command in COMMANDS:
        assert command.needs <= NEEDS, f"{command.name}: needs one of {NEEDS}, got {command.needs}"
        fill(command.code, PLACES_FOR_COMPOSING)
    counts: dict[str, int] = {}
    for command in COMMANDS:
        counts[command.check] = counts.get(command.check, 0) + 1
    print(json.dumps(counts, indent=1))


def inline_choices(page: Path) -> Iterator[tuple[str, str]]:
    """``(group, choice)`` of every `group=choice` in the page's inline code, a list
    (`callbacks=[default,ema]`) giving one pair per element."""
    prose = GENERATED.sub("", BLOCK.sub("", page.read_text()))  # tables come from conf/
    for span in re.findall(r"`([^`\n]+)`", prose):
        for group, value in re.findall(
            r"(?<![\w.~+/$-])([a-z_]+(?:/[a-z_]+)?)=(\[[\w,]*\]|\w+)", span
        ):
            if (CONF / group).is_dir():
                yield from ((group, c) for c in value.strip("[]").split(",") if c)


def test_choices_named_in_the_text_exist():
    """`finetune=top_two` in a sentence is checked too: the group must offer that choice."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        missing = [
            f"{page.relative_to(ROOT)}: {group}={choice}"
            for page in PAGES
            if not page_files(page)  # the recipes page names the choices it adds
            for group, choice in inline_choices(page)
            if choice not in loader.get_group_options(group)
        ]
    assert not missing, missing


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives a page's headings."""
    headings = re.findall(r"^#+ (.+)$", BLOCK.sub("", page.read_text()), re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def test_links_between_pages_resolve():
    broken = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", BLOCK.sub("", page.read_text())):
            if re.match(r"\w+://", target):
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            if not linked.exists() or (anchor and anchor not in anchors(linked)):
                broken.append(f"{page.relative_to(ROOT)}: ({target})")
    assert not broken, broken


@pytest.mark.parametrize("command", HYDRA_COMMANDS, ids=lambda c: c.name)
def test_docs_hydra_command_composes_and_validates(command: Command, tmp_path: Path):
    files = page_files(command.page)
    conf = conf_with(files, tmp_path) if files else CONF
    argv = [os.path.expandvars(w) for w in argv_of(fill(command.code, PLACES_FOR_COMPOSING))]
    for cfg in compose_command(argv, conf):
        if command.entry_point in TRAINING:
            validate_train(cfg)


# --- running the commands -------------------------------------------------------------------------
# Every command of the docs is a new process, but starting Python and importing torch, Lightning
# and timm costs ~8 s a command. So a runner imports them once and forks a child per command: a
# fresh process for each, as the shell would start it, without paying the imports again.
PRELOAD = [
    "transferlab.training.run",
    "transferlab.evaluation.evaluate",
    "transferlab.inference.export",
    "transferlab.inference.predict_folder",
    "transferlab.data.survey",
]


def fork_runner() -> None:
    """Read jobs (JSON lines: argv, cwd, env, log) on stdin; run each in a forked child; answer
    each with a JSON line holding the child's exit code."""
    import importlib
    import runpy
    import signal
    import traceback

    for module in PRELOAD:
        importlib.import_module(module)
    for line in sys.stdin:
        job = json.loads(line)
        sys.stdout.flush()
        if os.fork() == 0:
            code = 1
            signal.alarm(300)  # a command that hangs dies, and fails
            try:
                with open(job["log"], "w") as log:
                    os.dup2(log.fileno(), 1)
                    os.dup2(log.fileno(), 2)
                if job.get("stderr"):  # apart, for a test that reads what the user sees there
                    with open(job["stderr"], "w") as err:
                        os.dup2(err.fileno(), 2)
                os.chdir(job["cwd"])
                os.environ.clear()
                os.environ.update(job["env"])
                argv = job["argv"]
                if argv[0] == "-m":  # as python does: the current folder first on sys.path
                    sys.argv, sys.path[0] = argv[1:], os.getcwd()
                    runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
                else:  # the script's folder first on sys.path
                    sys.argv, sys.path[0] = argv, str(Path(argv[0]).resolve().parent)
                    runpy.run_path(argv[0], run_name="__main__")
                code = 0
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else int(exit_.code is not None)
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status = os.wait()
        print(json.dumps({"rc": os.waitstatus_to_exitcode(status)}), flush=True)


class Runner:
    """The test's side of ``fork_runner``: ``run(code, cwd)`` like ``shell`` for python commands."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from tests.test_docs import fork_runner; fork_runner()"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.count = 0

    def run(self, code: str, cwd: Path) -> subprocess.CompletedProcess:
        words = expand(code, cwd)
        if words[0] != "python" or (words[1].startswith("-") and words[1] != "-m"):
            return shell(code, cwd, 300)  # not `python file` or `python -m module`
        self.count += 1
        log = cwd / f"command-{self.count}.log"
        rc = self.send({"argv": words[1:], "cwd": str(cwd), "env": user_env(cwd), "log": str(log)})
        return subprocess.CompletedProcess(words, rc, "", log.read_text())

    def send(self, job: dict) -> int:
        """Run one job (see ``fork_runner``) in a forked child; its exit code."""
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())["rc"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def expand(code: str, cwd: Path) -> list[str]:
    """The words bash makes of ``code`` (quotes, $HOME, globs), without running it."""
    result = shell(f"printf '%s\\0' {code}", cwd, 30)
    return result.stdout.split("\0")[:-1]


@pytest.fixture(scope="session")
def runner() -> Iterator[Runner]:
    runner = Runner()
    yield runner
    runner.close()


def write_photos(folder: Path) -> Path:
    """``photos/bell_vs_ripped/<class>/*.jpg``: the class folders the pages train on."""
    write_class_folders(folder / "photos" / "bell_vs_ripped", ["bell_bottoms", "ripped"], 6)
    return folder / "photos" / "bell_vs_ripped"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, runner: Runner) -> dict:
    """A scratch folder holding what the pages refer to, and one tiny one-job sweep whose job
    fills ``<run>`` and whose folder fills ``multirun/<date>/<time>`` (Reliability restarts it:
    the same overrides, then one more seed)."""
    work = tmp_path_factory.mktemp("docs")
    write_photos(work)
    write_image(work / "shirt.jpg", (200, 200, 200))
    sweep = work / "shared" / "sweep"
    args = ["-m", "model=resnet18", "pretrained=false", "seed=1", f"hydra.sweep.dir={sweep}"]
    result = runner.run(shlex.join(["python", str(ROOT / "train.py"), *args, *BUDGET]), work)
    assert (sweep / "0" / "results.json").is_file(), result.stderr[-3000:]
    return {"work": work, "run": str(sweep / "0"), "sweep": str(sweep)}


def user_env(home: Path) -> dict[str, str]:
    """This venv's python first on PATH, and ``home`` as $HOME (``~/photos`` is the test's)."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    return {**os.environ, "PATH": path, "HOME": str(home), "PYTHONUNBUFFERED": "1"}


def shell(code: str, cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    """Run ``code`` with bash, as a user would, in ``cwd`` (also $HOME)."""
    return subprocess.run(
        ["bash", "-c", code],
        cwd=cwd,
        env=user_env(cwd),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def runnable(command: Command, places: dict[str, str]) -> str:
    """The command as the test runs it: placeholders filled, repo scripts by absolute path, the
    tiny budget appended to training entry points. The shell still expands what it would."""
    code = fill(command.code, places)
    script = re.search(r"(?:^|\s)python\s+([\w/.-]+\.py)\b", code)
    if script and (ROOT / script[1]).is_file():
        code = code[: script.start(1)] + str(ROOT / script[1]) + code[script.end(1) :]
    if command.entry_point not in TRAINING:
        return code
    budget = [o for o in BUDGET if not (OWN_EPOCHS.search(code) and "max_epochs" in o)]
    return f"{code} {shlex.join(budget)}"


def results_written(work: Path, since: float) -> list[dict]:
    found = (p for p in work.rglob("results.json") if p.stat().st_mtime >= since)
    return [json.loads(p.read_text()) | {"file": str(p)} for p in found]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_and_curl(command: Command, curls: list[Command], places: dict, work: Path) -> list[str]:
    """Start a serve.py command of the docs and run the docs' curl commands against it."""
    port = free_port()
    log = work / f"serve-{port}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            ["bash", "-c", f"exec {runnable(command, places)} port={port}"],
            cwd=work,
            env=user_env(work),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            if not answers(f"http://127.0.0.1:{port}/api/models", proc):
                return [f"{command.name}: serve.py did not answer:\n{log.read_text()[-2000:]}"]
            return [p for curl in curls for p in run_curl(curl, port, places, work)]
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def answers(url: str, proc: subprocess.Popen, seconds: float = 120) -> bool:
    """Whether ``url`` answers before ``proc`` exits or ``seconds`` pass."""
    deadline = time.time() + seconds
    while time.time() < deadline and proc.poll() is None:
        try:
            urllib.request.urlopen(url, timeout=2)
            return True
        except OSError:
            time.sleep(0.5)
    return False


def run_curl(curl: Command, port: int, places: dict, work: Path) -> list[str]:
    words = shlex.split(fill(curl.code, places).replace(":7860", f":{port}"))
    words[1:1] = ["--fail-with-body", "--silent", "--show-error"]  # an HTTP error fails
    result = shell(shlex.join(words), work, 120)
    if result.returncode == 0:
        return []
    return [f"{curl.name}: {curl.code}\n{result.stdout[-1000:]}{result.stderr[-1000:]}"]


def run_command(
    command: Command, workspace: dict, curls: list[Command], runner: Runner
) -> list[str]:
    """Run one command in the workspace; the problems found (none when it worked)."""
    work, started = workspace["work"], time.time() - 1
    if command.entry_point == "serve.py":
        return serve_and_curl(command, curls, workspace, work)
    result = runner.run(runnable(command, workspace), work)
    if result.returncode != 0:
        return [f"{command.name}: {command.code}\n{result.stderr[-2000:]}"]
    failed = [r["file"] for r in results_written(work, started) if r.get("status") != "ok"]
    if command.entry_point == "train.py" and failed:  # a sweep's failed job exits 0
        return [f"{command.name}: {command.code}: a run did not end ok: {failed}"]
    return []


@pytest.mark.slow
@requires_fmnist
def test_docs_commands_run(workspace: dict, runner: Runner):
    """Every unmarked command of the docs, in page order, in one scratch folder; the curl
    commands against the first serve.py command."""
    curls = [c for c in COMMANDS if c.argv[0] == "curl" and not c.needs]
    server = next((c for c in COMMANDS if c.entry_point == "serve.py" and not c.needs), None)
    assert server or not curls, "the docs show curl commands but no serve.py command to answer"
    problems = []
    for command in COMMANDS:
        if command.needs or command.recipe or command.argv[0] == "curl":
            continue
        started = time.time()
        problems += run_command(command, workspace, curls if command is server else [], runner)
        print(f"{time.time() - started:6.1f} s  {command.name}  {command.code}")
    assert not problems, "\n\n".join(problems)
