"""No dead keys: every key of every shipped yaml is read by the code it configures.

Each entry config is composed by Hydra with every option of every group it uses. A `_target_`
node's keys must be parameters of what it builds (``accepted_parameters``, as validation sees
them); keys it only passes on through ``**kwargs`` are checked where they land (``FORWARDED``).
Every other key is read through a ``${...}`` interpolation, or by the reader ``READ_BY`` names:
a file of this repo whose source mentions the key, or a callable that takes it as a parameter.
``hydra.*`` is Hydra's own schema (it refuses unknown keys itself), except its callbacks.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
import timm
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import get_object
from omegaconf import DictConfig, ListConfig

import transferlab.models  # noqa: F401  (registers the scratch CNN with timm)
from tests.conftest import CONF, ROOT
from transferlab.data.transforms import INPUT_KEYS
from transferlab.training.validate import HYDRA_KEYS, accepted_parameters

ENTRY_POINTS = ("train", "eval", "predict", "export", "serve", "inspect_data", "rank", "audit")
SRC = "src/transferlab/"

# Keys outside `_target_` nodes that code reads (interpolated ones need no entry), per entry
# point: dotted pattern (`*`: one key, `**`: any path) -> reader. `a.*` with a file reader hands
# node `a` over whole (the file names `a`: callbacks are built one by one, paths join the run's
# config); with a callable reader each key under `a` must be one of its parameters. "@train": a
# key of a yaml that train.py composes too (a shared group), where train.py reads it.
TRAIN = {
    "data": SRC + "training/build.py",
    "module": SRC + "training/build.py",
    "trainer": SRC + "training/build.py",
    "callbacks.*": SRC + "training/build.py",
    "logger": SRC + "training/build.py",
    "logger.*": SRC + "training/build.py",
    "augment.train": SRC + "training/build.py",
    "augment.device.*": "transferlab.data.on_device.DeviceAugment",
    **{f"input.{key}": SRC + "data/transforms.py" for key in INPUT_KEYS},
    "paths.output_dir": SRC + "training/run.py",
    "seed": SRC + "training/run.py",
    "skip_done": SRC + "training/run.py",
    "resume": SRC + "training/rundir.py",
    "ckpt_path": SRC + "training/rundir.py",
    "min_free_mb": SRC + "training/run.py",
    "tune.lr_find": SRC + "training/run.py",
    "features.cache": SRC + "features/probe_data.py",
    "audit.*": SRC + "features/audit_report.py",
    "features.cache_dir": SRC + "features/probe_data.py",
    "tune.*": "lightning.pytorch.tuner.Tuner.lr_find",  # the rest, via find_learning_rate
}
EVALUATE = SRC + "evaluation/evaluate.py"
PREDICT = SRC + "inference/predict_folder.py"
EXPORT = SRC + "inference/export.py"
SERVE = SRC + "inference/serve/main.py"
READ_BY: dict[str, dict[str, str]] = {
    "train": TRAIN,
    "inspect_data": {
        "**": "@train",  # the train config, surveyed instead of trained
        "samples_per_class": "inspect_data.py",
        "grid_classes": "inspect_data.py",
    },
    "rank": {
        "**": "@train",  # each backbone is built as train.py builds it
        **dict.fromkeys(("models", "sweep", "features.cache_dir"), "rank.py"),
        "features.cache": "@train",
    },
    "audit": {
        "**": "@train",
        "features.cache_dir": SRC + "features/audit_report.py",
        "features.cache": "@train",
        "audit.neighbours": "@train",
        "audit.hash_distance": "@train",
        "audit.leakage": "@train",
        "audit.*": SRC + "features/audit_report.py",
    },
    "eval": {
        **dict.fromkeys(("ckpt_path", "overrides", "logger", "logger.*", "paths.*"), EVALUATE),
        **dict.fromkeys(("unknown.threshold", "unknown.coverage", "report.num_wrong"), EVALUATE),
        **dict.fromkeys(("cam.num_images", "cam.per_grid", "cam.target_layer"), EVALUATE),
        **dict.fromkeys(("unknown.alpha", "tta"), EVALUATE),
        "calibrate": SRC + "evaluation/calibration.py",
        "callbacks.*": "@train",  # logger=wandb's test report; eval builds the run's callbacks
    },
    "predict": {
        **dict.fromkeys(
            (
                *("ckpt_path", "input", "output", "top_k", "batch_size", "device", "overrides"),
                *("unknown.threshold", "cam.enabled", "cam.dir", "cam.target_layer"),
            ),
            PREDICT,
        ),
        "paths.data_dir": "@train",  # the run's own config says where its data is
    },
    "export": {
        **dict.fromkeys(
            ("ckpt_path", "output_dir", "parity_images", "tolerance", "overrides"), EXPORT
        ),
        "paths.data_dir": "@train",
    },
    "serve": {
        **dict.fromkeys(
            (
                *("ckpts", "host", "port", "device", "examples", "max_upload_mb", "max_pixels"),
                *("unknown.threshold", "paths.output_dir"),
            ),
            SERVE,
        ),
        "paths.data_dir": "@train",
    },
}
CONFIG_PATH = re.compile(r"[a-z]\w*(\.\w+)*")  # how validate.py's strings name keys
REFERENCE = re.compile(r"\$\{([A-Za-z_][\w.]*)\}|\$\{oc\.select:([\w.]+)")


@functools.cache
def timm_takes(name: str, key: str, value: object) -> bool:
    """Whether timm model ``name`` uses ``key``: it builds with it (on the meta device: no memory,
    no weights) and its class names it, unless the class refuses unknown keywords anyway."""
    with torch.device("meta"):
        try:
            model = timm.create_model(name, pretrained=False, **{key: value})
        except TypeError:
            return False
    params, open_ended = accepted_parameters(type(model))
    return key in params or not open_ended


def timm_model_kwargs(node: DictConfig, key: str) -> bool:
    value = node[key]
    return timm_takes(node.name, key, tuple(value) if isinstance(value, ListConfig) else value)


def parameter_of(name: str) -> Callable[[DictConfig, str], bool]:
    return lambda node, key: key in accepted_parameters(get_object(name))[0]


# `_target_`s that pass keys on through **kwargs -> whether a key arrives where it is used.
FORWARDED = {
    "transferlab.models.create_backbone": timm_model_kwargs,
    "transferlab.training.acceleration.Compile": parameter_of("torch.compile"),
}


@dataclass
class Keys:
    """What one entry point's compositions hold."""

    units: set[str] = field(default_factory=set)  # keys outside `_target_` nodes, whole targets
    referenced: set[str] = field(default_factory=set)  # keys named by a ${...}
    unused: set[str] = field(default_factory=set)  # `_target_` keys nothing takes
    paths: set[str] = field(default_factory=set)  # every key, `_target_` nodes' included


def compositions(entry: str) -> Iterator[DictConfig]:
    """``entry`` as shipped, then with each option of each config group it composes."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        base = compose(entry, return_hydra_config=True)
        yield base
        if "**" in READ_BY[entry]:  # another entry point's config, whose options it composes
            return
        for group in base.hydra.runtime.choices:
            for option in sorted(p.stem for p in (CONF / group).glob("*.yaml")):
                yield compose(entry, [f"{group}={option}"], return_hydra_config=True)


def is_container(node: object) -> bool:
    return (
        isinstance(node, DictConfig | ListConfig)
        and not node._is_none()
        and not node._is_missing()
        and not node._is_interpolation()
    )


def children(node: DictConfig | ListConfig) -> Iterator[tuple[str, object]]:
    keys = range(len(node)) if isinstance(node, ListConfig) else node.keys()
    for key in keys:
        yield str(key), node._get_node(key)


def is_target(node: object) -> bool:
    return is_container(node) and isinstance(node, DictConfig) and "_target_" in node


def collect(node: object, path: str, keys: Keys) -> None:
    """Record the keys under ``node``: leaves, and `_target_` nodes as one unit each."""
    keys.paths.add(path)
    if is_target(node):
        keys.units.add(path)
        check_target(node, path, keys)
    elif isinstance(node, ListConfig) and any(is_target(c) for _, c in children(node)):
        keys.units.add(path)
        for i, item in children(node):
            collect_targets(item, f"{path}[{i}]", keys)
    elif isinstance(node, DictConfig) and is_container(node) and len(node):
        for key, child in children(node):
            collect(child, f"{path}.{key}" if path else key, keys)
    else:
        keys.units.add(path)


def collect_targets(node: object, path: str, keys: Keys) -> None:
    """Check the `_target_` nodes under ``node``, whose other keys are values, not options."""
    if is_target(node):
        check_target(node, path, keys)
    elif is_container(node):
        for key, child in children(node):
            collect_targets(child, f"{path}.{key}", keys)


def check_target(node: DictConfig, path: str, keys: Keys) -> None:
    params, open_ended = accepted_parameters(get_object(node._target_))
    forward = FORWARDED.get(node._target_)
    for key, child in children(node):
        if key in HYDRA_KEYS:
            continue
        keys.paths.add(f"{path}.{key}")
        if key not in params and not (open_ended and forward and forward(node, key)):
            keys.unused.add(f"{path}.{key} ({node._target_})")
        collect_targets(child, f"{path}.{key}", keys)


def collect_references(node: object, keys: Keys) -> None:
    if is_container(node):
        for _, child in children(node):
            collect_references(child, keys)
    elif isinstance(node._value(), str):
        for plain, selected in REFERENCE.findall(node._value()):
            keys.referenced.add(plain or selected)


@functools.cache
def entry_keys(entry: str) -> Keys:
    keys = Keys()
    for cfg in compositions(entry):
        collect_references(cfg, keys)
        for key, child in children(cfg):
            if key != "hydra":
                collect(child, key, keys)
        collect_targets(cfg.hydra.get("callbacks"), "hydra.callbacks", keys)
    return keys


def matches(pattern: str, path: str) -> bool:
    if pattern == "**":
        return True
    parts, wanted = path.split("."), pattern.split(".")
    return len(parts) == len(wanted) and all(
        w in ("*", p) for w, p in zip(wanted, parts, strict=True)
    )


@functools.cache
def names_in(file: str) -> frozenset[str]:
    """Attribute names, strings and parameter names in a source file: what it can read by."""
    tree = ast.parse((ROOT / file).read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names.add(node.value)
        elif isinstance(node, ast.arg | ast.keyword) and node.arg:
            names.add(node.arg)
    return frozenset(names)


def is_read(entry: str, path: str) -> bool:
    """Whether ``path`` of ``entry``'s configs is interpolated, or read by a reader in READ_BY."""
    return path in entry_keys(entry).referenced or any(
        matches(pattern, path) and reads(pattern, reader, path)
        for pattern, reader in READ_BY[entry].items()
    )


def reads(pattern: str, reader: str, path: str) -> bool:
    """Whether ``reader`` (a file of this repo, a callable by dotted name, or "@entry") reads
    ``path``."""
    key = path.rsplit(".", 1)[-1]
    if reader.startswith("@"):
        return path in entry_keys(reader[1:]).units and is_read(reader[1:], path)
    if not reader.endswith(".py"):
        return key in accepted_parameters(get_object(reader))[0]
    handed_over = pattern.endswith(".*")
    return (pattern.rsplit(".", 2)[-2] if handed_over else key) in names_in(reader)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_every_target_key_is_taken_by_what_it_builds(entry: str):
    unused = entry_keys(entry).unused
    assert not unused, f"{entry}: keys nothing takes (remove or wire them): {sorted(unused)}"


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_every_other_key_is_read(entry: str):
    dead = [path for path in sorted(entry_keys(entry).units) if not is_read(entry, path)]
    assert not dead, f"{entry}: keys no code reads (remove or wire them, or add the reader): {dead}"


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_read_by_lists_only_keys_the_yamls_hold(entry: str):
    units = entry_keys(entry).units
    stale = [p for p in READ_BY[entry] if not any(matches(p, path) for path in units)]
    assert not stale, f"{entry}: READ_BY names keys no yaml holds any more: {stale}"


def test_validation_names_only_keys_that_exist():
    """A rule of validate.py reading a key no yaml holds never fires (unfreeze_epoch did that)."""
    tree = ast.parse((ROOT / SRC / "training" / "validate.py").read_text())
    named = {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
        if CONFIG_PATH.fullmatch(node.value)
    }
    assert named, "no config keys found in validate.py: has the way it names them changed?"
    missing = sorted(named - entry_keys("train").paths)
    assert not missing, f"validate.py names keys no yaml holds: {missing}"
