"""Sweeps as a user runs them: real multiruns of train.py through Hydra's joblib and submitit
launchers, one job failing on purpose, W&B offline runs, and the report built from the folders."""

from __future__ import annotations

import json
import multiprocessing
import os
import struct
from pathlib import Path
from statistics import mean

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from tests.conftest import CONF, TINY, requires_fmnist, run_script
from transferlab.predictions import read_predictions
from transferlab.sweep.gpus import PinGpu, claim_gpu
from transferlab.sweep.report import write_report
from transferlab.sweep.runs import load_sweep

# 2 x 2: small_cnn has no ImageNet weights, so (small_cnn, pretrained) fails while building the
# model, as a bad config in a real sweep would; the other three jobs must still run.
GRID = ["model=small_cnn,efficientnet_lite0", "pretrained=true,false"]


def multirun(sweep_dir: Path, *overrides: str, env: dict[str, str] | None = None):
    args = ["-m", *TINY, f"hydra.sweep.dir={sweep_dir}", *overrides]
    with pytest.MonkeyPatch.context() as mp:
        for key, value in (env or {}).items():
            mp.setenv(key, value)
        return run_script("train.py", args, cwd=sweep_dir.parent)


def results_of(sweep_dir: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sweep_dir.glob("*/results.json")}


@pytest.fixture(scope="module")
def gpu_sweep(tmp_path_factory) -> tuple[Path, object]:
    """The 2 x 2 grid on the gpus launcher (joblib, one worker per GPU) with W&B offline.

    CUDA_VISIBLE_DEVICES=0,1 makes two GPUs visible to the launcher even on a CPU machine; the
    jobs train on the CPU (TINY), which is what lets this run anywhere.
    """
    sweep_dir = tmp_path_factory.mktemp("sweeps") / "gpus"
    env = {"CUDA_VISIBLE_DEVICES": "0,1", "WANDB_API_KEY": "", "WANDB_MODE": "offline"}
    result = multirun(sweep_dir, *GRID, "hydra/launcher=gpus", "logger=wandb", env=env)
    return sweep_dir, result


@pytest.mark.slow
@requires_fmnist
def test_a_failing_job_is_recorded_and_the_sweep_goes_on(gpu_sweep):
    sweep_dir, result = gpu_sweep
    assert result.returncode == 0, result.stderr[-3000:]
    results = results_of(sweep_dir)
    assert sorted(results) == ["0", "1", "2", "3"]  # one folder per job under the sweep dir
    status = {(r["model"], r["pretrained"]): r["status"] for r in results.values()}
    assert status == {
        ("small_cnn", True): "failed",
        ("small_cnn", False): "ok",
        ("efficientnet_lite0", True): "ok",
        ("efficientnet_lite0", False): "ok",
    }
    failed = next(r for r in results.values() if r["status"] == "failed")
    assert failed["traceback"]  # the reason itself, not Hydra's "Error in call to target" wrapper
    assert failed["error"].startswith("WeightsNotFoundError: no ImageNet weights for 'transfer")


@pytest.mark.slow
@requires_fmnist
def test_gpus_launcher_runs_one_job_per_gpu_through_joblib(gpu_sweep):
    sweep_dir, result = gpu_sweep
    launcher = yaml.safe_load((sweep_dir / "multirun.yaml").read_text())["hydra"]["launcher"]
    assert launcher["_target_"].endswith("JoblibLauncher") and launcher["n_jobs"] == 2
    assert "Joblib.Parallel(n_jobs=2" in result.stdout + result.stderr
    pinned = {}
    for log in sweep_dir.glob("*/train.log"):
        line = next(x for x in log.read_text().splitlines() if "pinned to GPU" in x)
        pinned[log.parent.name] = line.rsplit("CUDA_VISIBLE_DEVICES=", 1)[1].rstrip(")")
    assert len(pinned) == 4 and set(pinned.values()) <= {"0", "1"}
    claims = sorted(p.name for p in (sweep_dir / ".gpu_claims").iterdir())
    assert claims and set(claims) <= {"gpu-0.lock", "gpu-1.lock"}


def _claim_and_hold(lock_dir: str, claimed, release) -> None:
    claimed.put(claim_gpu(["0", "1"], Path(lock_dir)))
    release.wait(60)  # a worker holds its GPU for as long as it lives


def test_two_live_worker_processes_never_claim_the_same_gpu(tmp_path: Path):
    ctx = multiprocessing.get_context("fork")
    claimed, release = ctx.Queue(), ctx.Event()
    workers = [
        ctx.Process(target=_claim_and_hold, args=(str(tmp_path), claimed, release))
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    gpus = sorted(claimed.get(timeout=60) for _ in workers)
    release.set()
    for worker in workers:
        worker.join(timeout=60)
    assert gpus == ["0", "1"]


def test_gpus_launcher_without_gpus_runs_one_job_at_a_time_and_pins_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # what a machine without GPUs looks like
    config = OmegaConf.create(
        {"hydra": {"launcher": {"n_jobs": 0}, "sweep": {"dir": str(tmp_path)}, "job": {"num": 3}}}
    )
    callback = PinGpu()
    callback.on_multirun_start(config)
    callback.on_job_start(config)
    assert config.hydra.launcher.n_jobs == 1
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "" and not (tmp_path / ".gpu_claims").exists()


@pytest.mark.slow
@requires_fmnist
def test_every_job_is_in_one_wandb_group_with_tags_summary_and_media(gpu_sweep):
    sweep_dir, _ = gpu_sweep
    run_ids = set()
    for job, results in results_of(sweep_dir).items():
        if results["status"] != "ok":
            continue
        (run_file,) = (sweep_dir / job / "wandb").glob("offline-run-*/run-*.wandb")
        run, config, summary = read_wandb_run(run_file)
        run_ids.add(run.run_id)
        assert run.run_group == str(sweep_dir)
        scratch = "pretrained" if results["pretrained"] else "scratch"
        assert {f"model:{results['model']}", "data:fashion_mnist", scratch} <= set(run.tags)
        assert config["model.name"] and "run.pretrained" in config and "optimizer.lr" in config
        assert summary["test/acc"] == pytest.approx(results["test"]["test/acc"], abs=1e-6)
        media = {p.name.split("_")[0] for p in run_file.parent.glob("files/media/table/test/*")}
        assert media == {"predictions", "confusion"}
    assert len(run_ids) == 3  # jobs sharing a joblib worker still get a run each


@pytest.mark.slow
@requires_fmnist
def test_report_from_the_run_folders_matches_their_results(gpu_sweep, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps headers in a narrow terminal
    sweep_dir, _ = gpu_sweep
    assert (sweep_dir / "report.md").is_file()  # written by the WriteReport callback at the end
    report = write_report(sweep_dir).read_text()
    rows = {}
    for line in report.split("## ")[0].splitlines():  # the table, before the first section
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 8 and cells[0] in ("small_cnn", "efficientnet_lite0"):
            rows[(cells[0], cells[1].lower() == "true")] = cells[2:]
    for r in results_of(sweep_dir).values():
        runs, acc, f1, log_loss, train_s, speed = rows[(r["model"], r["pretrained"])]
        if r["status"] == "failed":
            assert (runs, acc) == ("0/1", "-")
            continue
        assert runs == "1/1" and acc.startswith(f"{r['test']['test/acc']:.4f} (")  # 95% CI
        stored = read_predictions(Path(r["output_dir"]))  # the per-image evidence of the run
        assert stored.correct.mean() == pytest.approx(r["test"]["test/acc"], abs=1e-6)
        assert (
            f1 == f"{r['test']['test/f1']:.4f}" and log_loss == f"{r['test']['test/log_loss']:.4f}"
        )
        assert train_s == f"{r['train_seconds']:.1f}" and speed == f"{r['images_per_second']:.1f}"
    assert len(rows) == 4
    assert report.splitlines()[2].startswith("- **Best:** not enough evidence: run more seeds.")
    failures = report.split("## Failed jobs")[1]
    assert "small_cnn" in failures and "WeightsNotFoundError" in failures
    assert (sweep_dir / "learning_curves.png").stat().st_size > 5000
    assert "test acc" in capsys.readouterr().out  # the rich table


@pytest.mark.slow
@requires_fmnist
def test_submitit_local_executor_sweep_and_mean_std_over_seeds(tmp_path: Path):
    sweep_dir = tmp_path / "submitit"
    grid = ["model=small_cnn", "pretrained=false", "seed=1,2"]
    result = multirun(sweep_dir, *grid, "hydra/launcher=local", "hydra.launcher.timeout_min=10")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (sweep_dir / ".submitit").is_dir()
    accs = [r["test"]["test/acc"] for r in results_of(sweep_dir).values()]
    assert len(accs) == 2
    table = write_report(sweep_dir).read_text()
    assert f"| all jobs | 2/2 | {mean(accs):.4f} (" in table  # with its 95% CI
    assert load_sweep(sweep_dir).swept == ["seed"]


@pytest.mark.slow
@requires_fmnist
def test_a_single_failing_run_still_exits_nonzero(tmp_path: Path):
    run_dir = tmp_path / "run"
    result = run_script(
        "train.py",
        [*TINY, "model=small_cnn", "pretrained=true", f"hydra.run.dir={run_dir}"],
        tmp_path,
    )
    assert result.returncode != 0
    assert json.loads((run_dir / "results.json").read_text())["status"] == "failed"


@pytest.mark.parametrize(
    ("experiment", "grid"),
    [
        ("compare_backbones", {"model": 3, "pretrained": 2, "seed": 3}),
        ("pretrained_vs_scratch", {"pretrained": 2, "seed": 3}),
        ("data_efficiency", {"data.train_per_class": 5, "pretrained": 2, "seed": 3}),
    ],
)
def test_experiment_is_one_sweep_with_seeds_for_error_bars(experiment: str, grid: dict):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", [f"experiment={experiment}"], return_hydra_config=True)
    params = cfg.hydra.sweeper.params
    assert {k: len(str(v).split(",")) for k, v in params.items()} == grid


def read_wandb_run(path: Path):
    """The run record, flat config and final summary of an offline .wandb file (a LevelDB log)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, pos, chunk = path.read_bytes(), 7, b""
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    run, config, summary = None, {}, {}
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # block trailer too short for a header: padding
            pos += 32768 - pos % 32768
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk, pos = chunk + data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind not in (1, 4):  # FULL or LAST completes a record
            if kind == 0 and length == 0:
                break
            continue
        record = pb.Record()
        record.ParseFromString(chunk)
        chunk = b""
        which = record.WhichOneof("record_type")
        if which == "run":
            run = record.run
        elif which == "config":
            config.update({i.key: json.loads(i.value_json) for i in record.config.update if i.key})
        elif which == "summary":
            summary.update(
                {i.key: json.loads(i.value_json) for i in record.summary.update if i.key}
            )
    return run, config, summary
