"""Frozen features: transferability scores against answers known independently, the on-disk
cache (hits, misses on any change, atomic entries), and rank.py end to end."""

from __future__ import annotations

import gzip
import json
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from tests.conftest import idx_datamodule, run_script, write_idx
from transferlab.data.split_record import sample_ids
from transferlab.features import scores
from transferlab.features.cache import FeatureCache, FeatureSet
from transferlab.features.probe_data import FeatureDataModule

ROOT = Path(__file__).resolve().parents[1]


def _features(n=300, d=24, classes=4, signal=1.5, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    centres = rng.normal(size=(classes, d)) * signal
    return centres[labels] + rng.normal(size=(n, d)), labels


def _max_evidence(f, y):
    """The evidence maximised over (alpha, beta) by a generic optimiser: LogME's answer."""
    result = minimize(
        lambda p: -scores.log_evidence(f, y, *np.exp(p)),
        x0=[0.0, 0.0],
        method="Nelder-Mead",
        options={"xatol": 1e-9, "fatol": 1e-12, "maxiter": 4000},
    )
    return -result.fun


@pytest.mark.parametrize("n,d", [(300, 24), (40, 64)])
def test_logme_is_the_maximum_evidence(n, d):
    """Within 0.1% (thuml/LogME's convergence tolerance) of the exact maximum over alpha and beta,
    per class then averaged, also with fewer images than feature dimensions."""
    f, labels = _features(n, d)
    exact = np.mean([_max_evidence(f, (labels == k).astype(float)) for k in np.unique(labels)])
    assert scores.logme(f, labels) == pytest.approx(exact, rel=1e-3)


def test_scores_prefer_features_that_separate_the_classes():
    good, labels = _features(signal=2.0)
    weak, _ = _features(signal=0.2)
    for score in (scores.logme, scores.hscore):
        assert score(good, labels) > score(weak, labels)
    assert scores.knn_accuracy(good[:200], labels[:200], good[200:], labels[200:]) > 0.9
    assert scores.probe_accuracy(weak[:200], labels[:200], weak[200:], labels[200:]) < 0.8


def test_leep_and_nce_known_values():
    """A source head that names the target class exactly: NCE = 0 (no uncertainty left) and
    LEEP = 0 (log 1); a head that says nothing: NCE = -H(Y) and LEEP = log(1/C)."""
    labels = np.repeat(np.arange(4), 25)
    exact = np.eye(10)[labels] * 0.999 + 0.0001
    assert scores.nce(exact, labels) == pytest.approx(0.0, abs=1e-9)
    assert scores.leep(exact, labels) == pytest.approx(0.0, abs=1e-2)
    blind = np.full((100, 10), 0.1)
    assert scores.nce(blind, labels) == pytest.approx(-np.log(4))
    assert scores.leep(blind, labels) == pytest.approx(np.log(0.25))


def _entry(n=5):
    return FeatureSet(
        np.ones((n, 3), np.float32), np.arange(n), np.array([f"c0/{i}.png" for i in range(n)])
    )


def test_cache_hit_and_misses_on_any_changed_key(tmp_path):
    cache = FeatureCache(tmp_path)
    key = {
        "model": "m",
        "weights": "w1",
        "input": {"size": 32},
        "data_files": "d1",
        "split": "train",
        "samples": "s",
    }
    assert cache.load(key) is None
    path = cache.save(key, _entry())
    assert path.is_file() and path.with_suffix(".json").is_file()
    hit = cache.load(key)
    assert hit is not None and hit.ids[0] == "c0/0.png" and hit.features.dtype == np.float32
    for change in (
        {"weights": "w2"},
        {"input": {"size": 48}},
        {"data_files": "d2"},
        {"split": "val"},
        {"samples": "s2"},
    ):
        assert cache.load({**key, **change}) is None, change
    # another sample set of the same split (another train_per_class) is stored beside it
    cache.save({**key, "samples": "s2"}, _entry(3))
    assert len(cache.load(key).ids) == len(_entry().ids)
    assert len(cache.load({**key, "samples": "s2"}).ids) == 3
    assert not list(tmp_path.rglob("*.tmp")), "temporary files left behind"


def test_cache_entry_is_whole_or_missing(tmp_path):
    """A sidecar naming another key, or a truncated npz, is a miss, not an error."""
    cache = FeatureCache(tmp_path)
    key = {"model": "m", "weights": "w", "split": "test"}
    path = cache.save(key, _entry())
    path.write_bytes(path.read_bytes()[:50])
    assert cache.load(key) is None


def _rank(idx_dir: Path, tmp_path: Path, run: str, *extra: str) -> dict:
    args = [
        f"data.search_dirs=[{idx_dir}]",
        "input.size=32",
        "data.num_workers=0",
        "data.train_per_class=null",
        "models=[efficientnet_lite0,small_cnn]",
        f"features.cache_dir={tmp_path / 'cache'}",
        f"hydra.run.dir={tmp_path / run}",
        *extra,
    ]
    result = run_script("rank.py", args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "logme" in result.stdout
    return json.loads((tmp_path / run / "ranking.json").read_text())


@pytest.mark.slow
def test_rank_scores_backbones_and_reuses_the_cache(idx_dir: Path, tmp_path: Path):
    """rank.py on real IDX files with the real offline Lite0 weights: scores for Lite0, small_cnn
    listed as skipped with its reason; a second run hits the cache and gives the same scores;
    changed data is a miss."""
    first = _rank(idx_dir, tmp_path, "r1")
    lite0, small = first["models"]
    assert small["model"] == "small_cnn" and "no ImageNet weights" in small["skipped"]
    assert set(lite0["scores"]) == {"logme", "hscore", "nce", "leep", "knn_acc", "probe_acc"}
    assert lite0["cache_hits"] == []
    with np.load(lite0["features"]["train"]) as npz:
        assert npz["features"].shape == (180, 1280) and npz["logits"].shape == (180, 1000)
        assert len(set(npz["ids"].tolist())) == 180
    assert (tmp_path / "r1" / "ranking.png").is_file()

    second = _rank(idx_dir, tmp_path, "r2")["models"][0]
    assert second["cache_hits"] == ["train", "val"]
    assert second["scores"] == lite0["scores"]

    images = idx_dir / "train-images-idx3-ubyte.gz"
    with gzip.open(images) as f:
        pixels = np.frombuffer(f.read()[16:], np.uint8).reshape(200, 28, 28).copy()
    pixels[0] = 255 - pixels[0]
    write_idx(images, pixels)
    third = _rank(idx_dir, tmp_path, "r3")["models"][0]
    assert third["cache_hits"] == [], "a changed image must be a miss"


def _garment_folder(
    root: Path,
    rng: np.random.Generator,
    per: tuple = (300, 20, 100),
    planted: int = 200,
    flipped: int = 60,
) -> dict:
    """Real Fashion-MNIST photos as PNG class folders (300 train, 20 val, 100 test per class),
    200 test photos planted into train as JPEG quality 70 resized by 10%, and 2% of the training
    photos moved to a wrong class folder."""
    from PIL import Image

    from transferlab.data.idx import read_idx

    fm = Path("/usr/share/datasets/fashion-mnist")
    x_train, y_train = (
        read_idx(fm / "train-images-idx3-ubyte.gz"),
        read_idx(fm / "train-labels-idx1-ubyte.gz"),
    )
    x_test, y_test = (
        read_idx(fm / "t10k-images-idx3-ubyte.gz"),
        read_idx(fm / "t10k-labels-idx1-ubyte.gz"),
    )
    names: dict = {"train": [], "planted": {}, "flipped": set()}
    for split, x, y, count in (
        ("train", x_train, y_train, per[0]),
        ("val", x_train[30000:], y_train[30000:], per[1]),
        ("test", x_test, y_test, per[2]),
    ):
        for k in range(10):
            folder = root / split / f"c{k}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in np.flatnonzero(y == k)[:count]:
                Image.fromarray(x[i]).save(folder / f"{i}.png")
                if split == "train":
                    names["train"].append(f"c{k}/{i}.png")
    test_files = sorted((root / "test").rglob("*.png"))
    for path in rng.choice(test_files, planted, replace=False):
        copy = Image.open(path).resize((31, 31), Image.BILINEAR)
        target = root / "train" / path.parent.name / f"planted_{path.stem}.jpg"
        copy.save(target, quality=70)
        names["planted"][f"train/{path.parent.name}/{target.name}"] = (
            f"test/{path.parent.name}/{path.name}"
        )
    for name in rng.choice(names["train"], flipped, replace=False):
        k = int(name[1])
        wrong = (k + rng.integers(1, 10)) % 10
        (root / "train" / name).rename(root / "train" / f"c{wrong}" / f"flip_{Path(name).name}")
        names["flipped"].add(f"train/c{wrong}/flip_{Path(name).name}")
    return names


@pytest.mark.slow
@pytest.mark.usefixtures("fmnist")
def test_audit_finds_planted_duplicates_and_flipped_labels(tmp_path: Path):
    """Recall of planted cross-split copies >= 95%, false pairs <= 0.5% of the other val/test
    images, and at least half of the top-2% label suspects are the flipped ones."""
    import csv

    truth = _garment_folder(tmp_path / "garments", np.random.default_rng(0))
    args = [
        "data=image_folder",
        f"data.root={tmp_path / 'garments'}",
        "data.num_workers=0",
        "data.train_per_class=null",
        f"features.cache_dir={tmp_path / 'cache'}",
        f"hydra.run.dir={tmp_path / 'audit'}",
    ]
    result = run_script("audit.py", args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "audit"
    with open(out / "leakage.csv") as f:
        pairs = list(csv.DictReader(f))
    found = {(p["train_id"], p["other_id"]) for p in pairs if p["split"] == "test"}
    planted = set(truth["planted"].items())
    recall = len(found & planted) / len(planted)
    false = [p for p in pairs if (p["train_id"], p["other_id"]) not in planted]
    assert recall >= 0.95, f"found {recall:.1%} of planted copies"
    assert len(false) <= 0.005 * (800 + 200), false[:5]
    with open(out / "suspects.csv") as f:
        suspects = [row["id"] for row in csv.DictReader(f)]
    top = suspects[: round(0.02 * (3000 + 200))]
    hits = sum(s in truth["flipped"] for s in top)
    assert hits >= len(top) / 2, f"{hits} of the top {len(top)} suspects were flipped"
    report = (out / "audit.md").read_text()
    assert "near-duplicate pairs" in report and (out / "leakage.png").is_file()
    print(
        f"audit: recall {recall:.3f}, false pairs {len(false)}, flipped in top-2% {hits}/{len(top)}"
    )


def _job(sweep: Path, num: int, model: str, acc: float) -> None:
    """One job folder as a sweep leaves it: Hydra's overrides and the run's results.json."""
    job = sweep / str(num)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(f"- model={model}\n- pretrained=true\n")
    results = {"status": "ok", "pretrained": True, "test": {"test/acc": acc}}
    (job / "results.json").write_text(json.dumps(results))


def test_kendall_tau_against_a_sweep_reaches_its_report(tmp_path: Path):
    """Scores in the sweep's order give tau 1, reversed -1; rank.py's ranking.json in the sweep
    folder becomes a section of the sweep report."""
    from transferlab.features.ranking import write_ranking
    from transferlab.sweep.report import write_report

    sweep = tmp_path / "sweep"
    for num, (model, acc) in enumerate((("a", 0.80), ("b", 0.85), ("c", 0.90))):
        _job(sweep, num, model, acc)
    rows = [
        {
            "model": m,
            "scores": {
                "logme": lm,
                "hscore": -lm,
                "nce": 0.0,
                "leep": lm,
                "knn_acc": lm,
                "probe_acc": lm,
            },
            "extract_seconds": 1.0,
        }
        for m, lm in (("a", 0.1), ("b", 0.2), ("c", 0.3))
    ] + [{"model": "d", "skipped": "no ImageNet weights for 'd'"}]
    (tmp_path / "out").mkdir()
    ranking = write_ranking(tmp_path / "out", rows, sweep)
    taus = ranking["sweep"]["kendall_tau"]
    assert taus["backbones"] == ["a", "b", "c"]
    assert taus["logme"] == 1.0 and taus["hscore"] == -1.0 and taus["nce"] is None
    assert (sweep / "ranking.json").is_file()
    report = write_report(sweep).read_text()
    assert "## Scores before training" in report and "| 1.0000 | -1.0000 | - |" in report


def test_cached_features_come_in_the_batches_their_images_do(idx_dir: Path, tmp_path: Path):
    """Same seed, same batches, epoch after epoch: the feature loader (no workers) shuffles as
    the image loader (a persistent worker, which skips the per-epoch draws) does, so a probe
    on cached features takes the Trainer path's steps."""
    images = idx_datamodule(idx_dir, tmp_path, "data.num_workers=1")
    splits = {}
    for split in ("train", "val", "test"):
        dataset = getattr(images, f"{split}_set")
        labels = np.array([int(dataset[i][1]) for i in range(len(dataset))])
        rows = np.arange(len(labels), dtype=np.float32)[:, None]  # a row names its sample
        splits[split] = FeatureSet(rows, labels, np.asarray(sample_ids(dataset)))
    features = FeatureDataModule(images, splits)

    def epochs(datamodule) -> list[list[int]]:
        """Three epochs as Lightning takes them: len(loader) batches, the iterator not run out."""
        torch.manual_seed(7)
        loader = datamodule.train_dataloader()
        return [
            [int(y) for _, labels in islice(loader, len(loader)) for y in labels] for _ in range(3)
        ]

    by_images, by_features = epochs(images), epochs(features)
    assert by_images == by_features
    assert by_images[0] != by_images[1] != by_images[2], "each epoch is shuffled anew"
    rows = [int(r) for x, _ in features.train_dataloader() for r in x[:, 0]]
    assert sorted(rows) != rows and len(set(rows)) == len(rows)  # shuffled, no sample twice


@pytest.mark.slow
def test_linear_probe_trains_on_cached_features_and_reloads_as_any_run(
    idx_dir: Path, tmp_path: Path
):
    """finetune=linear_probe augment=none reads the feature cache: a five-seed sweep extracts in
    its first job and reads the cache in jobs 2-5; a later run reads it too, and writes
    checkpoints that eval.py loads like any run's; features.cache=false goes through the
    backbone as before."""
    probe = [
        f"data.search_dirs=[{idx_dir}]",
        "input.size=32",
        "data.num_workers=0",
        "data.train_per_class=null",
        "finetune=linear_probe",
        "augment=none",
        "trainer.max_epochs=2",
        f"features.cache_dir={tmp_path / 'cache'}",
    ]
    sweep = run_script(
        "train.py",
        ["-m", *probe, "seed=1,2,3,4,5", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        tmp_path,
    )
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    logs = [(tmp_path / "sweep" / str(job) / "train.log").read_text() for job in range(5)]
    assert all("linear probe on cached features" in log for log in logs)
    assert "cached: none" in logs[0]
    assert all("cached: train, val, test" in log for log in logs[1:]), "jobs 2-5 hit the cache"
    runs = {}
    for name, extra in (("warm", ["seed=1"]), ("trainer", ["features.cache=false"])):
        result = run_script(
            "train.py", [*probe, *extra, f"hydra.run.dir={tmp_path / name}"], tmp_path
        )
        assert result.returncode == 0, result.stderr[-3000:]
        runs[name] = (
            result.stdout + result.stderr,
            json.loads((tmp_path / name / "results.json").read_text()),
        )
    assert "cached: train, val, test" in runs["warm"][0]
    assert "linear probe on cached features" not in runs["trainer"][0]
    cold = json.loads((tmp_path / "sweep" / "0" / "results.json").read_text())
    warm = runs["warm"][1]
    assert cold["seed"] == warm["seed"] == 1 and cold["status"] == warm["status"] == "ok"
    assert cold["test"]["test/acc"] == warm["test"]["test/acc"]  # same features, same seed
    assert (tmp_path / "warm" / "test_predictions.npz").is_file()

    result = run_script(
        "eval.py",
        [
            f"ckpt_path={tmp_path / 'warm' / 'checkpoints' / 'best.ckpt'}",
            "cam.num_images=0",
            f"hydra.run.dir={tmp_path / 'eval'}",
        ],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    evaluated = json.loads((tmp_path / "eval" / "eval_results.json").read_text())
    assert evaluated["test"]["test/acc"] == pytest.approx(warm["test"]["test/acc"], abs=0.02)


@pytest.mark.slow
@pytest.mark.usefixtures("fmnist")
def test_train_stops_on_leaked_images_when_asked(tmp_path: Path):
    """audit.leakage=error: a run whose test photos were copied into train stops before fitting,
    in one line naming copies; warn says so and trains."""
    _garment_folder(tmp_path / "g", np.random.default_rng(1), per=(20, 5, 10), planted=5, flipped=0)
    args = [
        "data=image_folder",
        f"data.root={tmp_path / 'g'}",
        "data.num_workers=0",
        "data.train_per_class=null",
        "input.size=32",
        "trainer.max_epochs=1",
        f"features.cache_dir={tmp_path / 'cache'}",
    ]
    stopped = run_script(
        "train.py", [*args, "audit.leakage=error", f"hydra.run.dir={tmp_path / 'e'}"], tmp_path
    )
    assert stopped.returncode == 2, stopped.stderr[-2000:]
    line = stopped.stderr.strip().splitlines()[-1]
    assert line.startswith("error: audit.leakage=error: 5 val/test images copy training images"), (
        line
    )
    assert "planted_" in line and not (tmp_path / "e" / "checkpoints").exists()
    warned = run_script(
        "train.py", [*args, "audit.leakage=warn", f"hydra.run.dir={tmp_path / 'w'}"], tmp_path
    )
    assert warned.returncode == 0, warned.stderr[-2000:]
    assert "audit.leakage: 5 val/test images copy training images" in warned.stdout + warned.stderr
