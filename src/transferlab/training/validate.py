"""Config checks run before anything is built: one line per problem, naming the option.

Two kinds: every `_target_` node is checked against the signature of what it instantiates
(unknown keys, plainly wrong types), and ``CHECKS`` hold the rules that span options
(an unfreeze epoch past max_epochs). A new rule is one function decorated with ``@check``.
"""

from __future__ import annotations

import difflib
import inspect
import types
import typing
from collections.abc import Callable, Iterator
from typing import Any

from hydra.utils import get_object
from omegaconf import DictConfig, ListConfig, OmegaConf

from transferlab.errors import ConfigError

HYDRA_KEYS = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}
SIMPLE_TYPES = (bool, int, float, str)

Check = Callable[[DictConfig], Iterator[str]]
CHECKS: list[Check] = []


def check(rule: Check) -> Check:
    """Register ``rule``: a generator of one-line problems found in a composed config."""
    CHECKS.append(rule)
    return rule


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError listing every problem of ``cfg`` (all at once, so one fix round)."""
    problems = [*target_problems(cfg)]
    for rule in CHECKS:
        problems.extend(rule(cfg))
    if problems:
        raise ConfigError("; ".join(problems))


def select(cfg: DictConfig, key: str) -> Any:
    """The resolved value at ``key``, or None where it is absent or cannot resolve yet."""
    try:
        return OmegaConf.select(cfg, key, default=None)
    except Exception:  # an interpolation only the run can resolve (e.g. ${input.resize})
        return None


# --- `_target_` nodes against their signatures --------------------------------------------------
def target_problems(node: Any, path: str = "") -> Iterator[str]:
    """Unknown keys and wrong simple types of every `_target_` node under ``node``."""
    if isinstance(node, ListConfig):
        for i in range(len(node)):
            yield from target_problems(node._get_node(i), f"{path}[{i}]")
        return
    if not isinstance(node, DictConfig):
        return
    if "_target_" in node:
        yield from _node_problems(node, path)
    for key in node:
        child = node._get_node(key)
        if isinstance(child, DictConfig | ListConfig) and not child._is_none():
            yield from target_problems(child, f"{path}.{key}" if path else str(key))


def _node_problems(node: DictConfig, path: str) -> Iterator[str]:
    try:
        target = get_object(str(node._target_))
    except Exception:
        yield f"{path}._target_={node._target_}: cannot be imported"
        return
    params, open_ended = accepted_parameters(target)
    name = getattr(target, "__qualname__", str(target))
    for key in node:
        key = str(key)
        if key in HYDRA_KEYS:
            continue
        if key not in params:
            if not open_ended:
                close = difflib.get_close_matches(key, list(params), n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                yield f"{path}.{key}: unknown option for {name}{hint}"
            continue
        expected = simple_type(params[key])
        value = select(node, key)  # a scalar; lists and dicts are left to the target
        if expected and isinstance(value, SIMPLE_TYPES) and not _is_instance(value, expected):
            yield f"{path}.{key}={value!r}: must be {expected.__name__} ({name})"


def accepted_parameters(target: Any) -> tuple[dict[str, Any], bool]:
    """Keyword parameters of ``target`` (a class follows ``**kwargs`` up its bases) with their
    type hints, and whether it accepts any keyword at all."""
    functions = (
        [c.__init__ for c in target.__mro__ if "__init__" in vars(c)]
        if inspect.isclass(target)
        else [target]
    )
    params: dict[str, Any] = {}
    for fn in functions:
        try:
            signature = inspect.signature(fn)
        except (TypeError, ValueError):
            return params, True
        hints = _hints(fn)
        for p in signature.parameters.values():
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                params.setdefault(p.name, hints.get(p.name))
        if not any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
            return params, False
    return params, True


def simple_type(hint: Any) -> type | None:
    """The one int/float/bool/str that a yaml scalar for ``hint`` can be (``float | Tensor``:
    float, ``int | None``: int; tensors and other objects have no yaml form); else None."""
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    simple = [a for a in (typing.get_args(hint) if union else (hint,)) if a in SIMPLE_TYPES]
    return simple[0] if len(simple) == 1 else None


def _hints(fn: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception:  # hints naming what is only imported under TYPE_CHECKING
        return {}


def _is_instance(value: Any, expected: type) -> bool:
    if isinstance(value, bool):
        return expected is bool
    if expected is float:
        return isinstance(value, int | float)
    return isinstance(value, expected)


# --- rules across options ----------------------------------------------------------------------
def _at_least(cfg: DictConfig, key: str, minimum: int) -> Iterator[str]:
    value = select(cfg, key)
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if number and value < minimum:
        yield f"{key}={value}: must be at least {minimum}"


@check
def positive_sizes(cfg: DictConfig) -> Iterator[str]:
    for key in ("data.batch_size", "input.size"):
        yield from _at_least(cfg, key, 1)
    yield from training_length(cfg)
    yield from _at_least(cfg, "model.head.hidden", 1)  # head=mlp; the linear head has none
    yield from _at_least(cfg, "callbacks.last_checkpoint.every_n_train_steps", 1)


def training_length(cfg: DictConfig) -> Iterator[str]:
    """max_epochs >= 1, or -1 (Lightning's "no epoch limit") when max_steps bounds the run."""
    max_epochs, max_steps = select(cfg, "trainer.max_epochs"), select(cfg, "trainer.max_steps")
    if max_epochs == -1 and not (isinstance(max_steps, int) and max_steps > 0):
        yield "trainer.max_epochs=-1 (no epoch limit) needs trainer.max_steps > 0"
    elif max_epochs != -1:
        yield from _at_least(cfg, "trainer.max_epochs", 1)


@check
def fractions_and_rates(cfg: DictConfig) -> Iterator[str]:
    fraction = select(cfg, "data.val_fraction")
    if isinstance(fraction, int | float) and not 0 < fraction < 1:
        yield f"data.val_fraction={fraction}: must be between 0 and 1"
    per_class = select(cfg, "data.train_per_class")
    if isinstance(per_class, int) and not isinstance(per_class, bool) and per_class < 1:
        yield f"data.train_per_class={per_class}: must be at least 1 (null: all the training images)"
    lr = select(cfg, "optimizer.lr")
    if isinstance(lr, int | float) and lr <= 0:
        yield f"optimizer.lr={lr}: must be positive"


@check
def enough_classes(cfg: DictConfig) -> Iterator[str]:
    names = select(cfg, "data.class_names")
    if names is not None and len(names) < 2:
        yield f"data.class_names has {len(names)} class: classification needs at least 2"


@check
def unfreeze_within_training(cfg: DictConfig) -> Iterator[str]:
    """``finetune.unfreeze_at`` (an epoch, or a list per stage from the top) must start a stage
    before ``trainer.max_epochs``, or the backbone never trains (-1: max_steps bounds the run)."""
    value, max_epochs = select(cfg, "finetune.unfreeze_at"), select(cfg, "trainer.max_epochs")
    is_list = isinstance(value, ListConfig)
    epochs = [e for e in (value if is_list else [value]) if type(e) is int]
    if epochs and type(max_epochs) is int and 0 < max_epochs <= min(epochs):
        shown = OmegaConf.to_container(value) if is_list else value
        which = f"its earliest epoch {min(epochs)} " if is_list else ""
        yield (
            f"finetune.unfreeze_at={shown}: {which}must be below trainer.max_epochs={max_epochs}, "
            "or the backbone never trains"
        )


@check
def one_way_to_resume(cfg: DictConfig) -> Iterator[str]:
    if select(cfg, "resume") and select(cfg, "ckpt_path"):
        yield "resume=true and ckpt_path are both set: resume continues this run dir's last.ckpt; pick one"


def check_num_classes(num_classes: int, source: str) -> None:
    """Raise ConfigError for data with fewer than 2 classes (known only once data is read)."""
    if num_classes < 2:
        raise ConfigError(f"{source}: {num_classes} class found, classification needs at least 2")
