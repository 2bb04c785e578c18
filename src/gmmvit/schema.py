"""The config's schema: one dataclass per config group, registered in Hydra's ConfigStore.

Hydra merges every ``conf/`` file and every override into these dataclasses when it composes a
run, so a value of the wrong type (``seed=abc``), an unknown choice (``precision=fp8``) or an
unknown key (``recipe.epoch=5``) is refused before anything runs; ``gmmvit.cli`` prints the
refusal as one line naming the key, the value and what it accepts. What types cannot say (ranges,
one key against another, the machine) is checked by ``check(cfg)``, in one place, before a run
reads any data.

Adding a config key: one line in its group's dataclass below (a field with its type and
default), plus ``at_least(...)`` / ``fraction(...)`` for a range; a key of a new choice type gets
a ``Choice`` subclass. Model files and the optimizer stay open (``Any``): their keys go to the
model or optimizer class as they are; only ``model.pool`` (where a model has one) and the
optimizer's ``lr`` and ``weight_decay`` are checked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, is_dataclass
from enum import Enum
from typing import Any, List, Optional

import torch
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from gmmvit.fast import COMPILE_MODES
from gmmvit.gpu_data import DATA_ON_GPU
from gmmvit.models.common import ConfigError
from gmmvit.step import STEP_GRAPH


class Choice(str, Enum):
    """A key with a fixed set of string values; members are named as their values."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


class Precision(Choice):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"


class Attention(Choice):
    auto = "auto"
    explicit = "explicit"
    flex = "flex"


class Combine(Choice):
    mul = "mul"
    add = "add"


class Pool(Choice):
    auto = "auto"
    token = "token"
    mean = "mean"
    class_attention = "class_attention"  # CaiT's fixed pooling


class Placement(Choice):
    pre = "pre"
    post = "post"


class WandbMode(Choice):
    auto = "auto"
    online = "online"
    offline = "offline"


class Resize(Choice):
    pad = "pad"
    resize = "resize"


class AutoAugmentPolicy(Choice):
    cifar10 = "cifar10"
    svhn = "svhn"
    imagenet = "imagenet"


# keys whose values mix words and booleans or numbers (``compile: false``, ``workers: 4``): YAML and
# the command line type those, so they are checked by ``check`` rather than by an enum
# (the choices are the modules' own that read them)
COMPILE = ("auto", "true", "false", *COMPILE_MODES)
DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def at_least(low, default=MISSING):
    """A field whose value must be ``>= low`` (checked by ``check``)."""
    return field(default=default, metadata={"at_least": low})


def fraction(default=MISSING):
    """A field whose value must lie in (0, 1] (checked by ``check``)."""
    return field(default=default, metadata={"fraction": True})


def probability(default=MISSING):
    """A field whose value must lie in [0, 1] (checked by ``check``)."""
    return field(default=default, metadata={"probability": True})


# --- mask/ ----------------------------------------------------------------------------------------

@dataclass
class MaskConfig:
    name: str = MISSING
    _target_: str = MISSING
    _partial_: bool = True
    combine: Combine = Combine.mul
    placement: Placement = Placement.pre


@dataclass
class ElmMaskConfig(MaskConfig):
    pass


@dataclass
class GmmMaskConfig(MaskConfig):
    num_kernels: int = at_least(1, 5)
    sigma_init: List[float] = field(default_factory=lambda: [10.0, 10.0])  # mean, std
    alpha_init_std: float = at_least(0.0, 2.0)
    exact_tails: bool = False


# --- dataset/ -------------------------------------------------------------------------------------

@dataclass
class DatasetConfig:
    name: str = MISSING
    source: Any = MISSING  # the loading function (_target_) and its arguments
    num_classes: int = at_least(2)
    channels: int = at_least(1)
    img_size: int = at_least(1)
    native_size: int = at_least(1)
    resize: Resize = Resize.pad
    mean: List[float] = MISSING
    std: List[float] = MISSING
    autoaugment_policy: Optional[AutoAugmentPolicy] = None
    hflip: bool = True
    train_fraction: float = fraction(1.0)


# --- recipe/ --------------------------------------------------------------------------------------

@dataclass
class AugConfig:
    hflip: bool = True
    crop_padding: int = at_least(0, 4)
    autoaugment: bool = True
    random_erasing: float = probability(0.25)
    random_erasing_max_area: float = fraction(0.4)
    random_erasing_min_aspect: float = fraction(0.3)


@dataclass
class MixConfig:
    prob: float = probability(0.5)
    switch_prob: float = probability(0.5)
    mixup_alpha: float = at_least(0.0, 1.0)
    cutmix_alpha: float = at_least(0.0, 1.0)


@dataclass
class RecipeConfig:
    name: str = MISSING
    epochs: int = at_least(1, 100)
    passes_per_epoch: int = at_least(1, 3)
    batch_size: int = at_least(1, 128)
    drop_last: bool = True
    optimizer: Any = MISSING  # open, like model: its keys go to the optimizer class (lr, weight_decay checked)
    min_lr: float = at_least(0.0, 1e-6)
    warmup_epochs: float = at_least(0.0, 10.0)  # below epochs (checked by ``check``)
    label_smoothing: float = field(default=0.1, metadata={"probability": True})
    grad_clip: Optional[float] = None
    aug: AugConfig = field(default_factory=AugConfig)
    mix: MixConfig = field(default_factory=MixConfig)


# --- logger/ --------------------------------------------------------------------------------------

@dataclass
class LoggerConfig:
    name: str = MISSING


@dataclass
class WandbLoggerConfig(LoggerConfig):
    project: str = "gmmvit"
    entity: Optional[str] = None
    mode: WandbMode = WandbMode.auto
    mask_figures: int = at_least(0, 4)


# --- the top level (conf/config.yaml) -------------------------------------------------------------

@dataclass
class PathsConfig:
    data: str = MISSING


@dataclass
class Config:
    model: Any = MISSING  # open: architecture keys go to the model class as they are
    mask: MaskConfig = MISSING
    dataset: DatasetConfig = MISSING
    recipe: RecipeConfig = MISSING
    logger: LoggerConfig = MISSING
    seed: int = 0
    sweep: str = "default"
    device: str = "auto"  # auto, cpu, cuda, cuda:N (checked by ``check``)
    runs_per_gpu: int = at_least(1, 1)
    precision: Precision = Precision.auto
    compile: Any = "auto"  # one of COMPILE
    attention: Attention = Attention.auto
    data_on_gpu: Any = "auto"  # one of DATA_ON_GPU
    step_graph: Any = False  # one of STEP_GRAPH
    profile_steps: Optional[int] = at_least(1, None)
    threads: Optional[int] = at_least(0, None)  # 0 or null: torch's default
    workers: Any = "auto"  # auto or a number >= 0
    deterministic: bool = False
    limit_train: Optional[int] = at_least(1, None)
    limit_test: Optional[int] = at_least(1, None)
    gain_reference: List[str] = field(default_factory=lambda: ["mask=none"])
    run_dir: str = MISSING
    paths: PathsConfig = field(default_factory=PathsConfig)


# where each dataclass is stored: conf files name it in their defaults list
# (conf/config.yaml: ``- /schema/config``; conf/mask/gmm.yaml: ``- /schema/mask/gmm@_here_``)
SCHEMAS = {
    ("schema", "config"): Config,
    ("schema/mask", "none"): MaskConfig,
    ("schema/mask", "elm"): ElmMaskConfig,
    ("schema/mask", "gmm"): GmmMaskConfig,
    ("schema/dataset", "dataset"): DatasetConfig,
    ("schema/recipe", "recipe"): RecipeConfig,
    ("schema/logger", "none"): LoggerConfig,
    ("schema/logger", "wandb"): WandbLoggerConfig,
}


def register() -> None:
    store = ConfigStore.instance()
    for (group, name), node in SCHEMAS.items():
        store.store(group=group, name=name, node=node)


# --- what types cannot say ------------------------------------------------------------------------

def describe_type(annotation) -> str:
    """What a key takes, in words (for the one-line refusal)."""
    text = str(annotation)
    optional = text.startswith("Optional[")
    inner = text[len("Optional["):-1] if optional else text
    enum = next((c for c in Choice.__subclasses__() if c.__name__ == inner), None)
    if enum is not None:
        words = "one of " + ", ".join(m.value for m in enum)
    else:
        words = {"int": "a whole number", "float": "a number", "bool": "true or false", "str": "a string",
                 "List[float]": "a list of numbers"}.get(inner, inner)
    return words + (" or null" if optional else "")


def _problem(key: str, value, spec) -> Optional[str]:
    if value is None:
        return None
    if "at_least" in spec and value < spec["at_least"]:
        return f"{key}={value}: {key} must be >= {spec['at_least']}"
    if spec.get("fraction") and not 0 < value <= 1:
        return f"{key}={value}: {key} must be in (0, 1]"
    if spec.get("probability") and not 0 <= value <= 1:
        return f"{key}={value}: {key} must be in [0, 1]"
    return None


def _ranges(node: DictConfig, prefix: str) -> Optional[str]:
    """The first value outside its field's range, walking the typed nodes under ``node``."""
    kind = OmegaConf.get_type(node)
    if not is_dataclass(kind):
        return None
    names = {f.name for f in fields(kind)}
    for key in node.keys():
        if key not in names and key != "hydra":  # added with +key=value, which the schema does not stop
            group = prefix.rstrip(".")
            return f"{prefix}{key} is not {f'a key of {group}' if group else 'a config key'}{suggest(prefix + key)}"
    for f in fields(kind):
        if f.name not in node:
            continue
        key = f"{prefix}{f.name}"
        child = node._get_node(f.name)
        if isinstance(child, DictConfig):
            problem = _ranges(child, f"{key}.")
        elif f.metadata:  # only ranged values are read: others may be interpolations not yet resolvable
            problem = _problem(key, node[f.name], f.metadata)
        else:
            problem = None
        if problem:
            return problem
    return None


def check(cfg: DictConfig, machine: bool = True) -> None:
    """Everything about ``cfg`` that its types cannot say; ``ConfigError`` (one line) at the first
    problem. Called before a run reads any data; ``machine``: also whether this machine has the
    device asked for."""
    problem = _ranges(cfg, "")
    if problem:
        raise ConfigError(problem)
    recipe = cfg.recipe
    if recipe.warmup_epochs >= recipe.epochs:
        raise ConfigError(
            f"recipe.warmup_epochs={recipe.warmup_epochs} is not shorter than recipe.epochs={recipe.epochs}: "
            "lower recipe.warmup_epochs (0 = no warm-up) or raise recipe.epochs")
    for key in ("lr", "weight_decay"):
        value = recipe.optimizer.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
            raise ConfigError(f"recipe.optimizer.{key}={value}: recipe.optimizer.{key} takes a number >= 0")
    for key, choices in (("compile", COMPILE), ("data_on_gpu", DATA_ON_GPU), ("step_graph", STEP_GRAPH)):
        if str(cfg[key]).lower() not in choices:
            raise ConfigError(f"{key}={cfg[key]}: {key} takes one of {', '.join(choices)}")
    workers = cfg.workers
    if workers != "auto" and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 0):
        raise ConfigError(f"workers={workers}: workers takes auto or a whole number >= 0")
    pool = cfg.model.get("pool") if isinstance(cfg.model, DictConfig) else None
    if pool is not None and pool not in [p.value for p in Pool]:
        raise ConfigError(f"model.pool={pool}: model.pool takes one of {', '.join(p.value for p in Pool)}")
    check_device(str(cfg.device), machine)


def check_device(device: str, machine: bool = True) -> None:
    """``device`` is well formed and, with ``machine``, names a GPU this machine has."""
    if not DEVICE.fullmatch(device):
        raise ConfigError(f"device={device}: device takes auto, cpu, cuda or cuda:N")
    if machine and device.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= count:
            seen = f"sees {count} GPU(s)" if count else "has no GPU torch can use"
            raise ConfigError(f"device={device}: this machine {seen}; use device=auto (a free GPU, else the CPU) "
                              "or device=cpu")


# --- one line for what Hydra refuses ---------------------------------------------------------------

def keys_by_option() -> dict[str, list[str]]:
    """Every key a config can have, with the group options that have it (``mask.num_kernels``:
    ``["mask=gmm"]``; ``[]`` for keys of every config): the schema's, and the model files' in conf/model/."""
    from gmmvit.cli import CONF

    owners: dict[str, list[str]] = {}
    for (group, name), node in SCHEMAS.items():
        prefix = group.partition("/")[2]
        option = f"{prefix}={name}" if prefix in ("mask", "logger") else None
        for key in _leaf_keys(OmegaConf.structured(node)):
            owners.setdefault(f"{prefix}.{key}" if prefix else key, []).extend([option] if option else [])
    for path in sorted(CONF.glob("model/*.yaml")):
        for key in _leaf_keys(OmegaConf.load(path)):
            if not key.startswith("defaults"):
                owners.setdefault(f"model.{key}", []).append(f"model={path.stem}")
    for path in sorted(CONF.glob("recipe/*.yaml")):  # the optimizer's keys
        for key in _leaf_keys(OmegaConf.load(path)):
            if key.startswith("optimizer."):
                owners.setdefault(f"recipe.{key}", [])
    return owners


def known_keys() -> list[str]:
    return sorted(keys_by_option())


def _leaf_keys(node, prefix: str = "") -> list[str]:
    out = []
    for key in node.keys():
        value = node._get_node(key)
        if isinstance(value, DictConfig) and key not in ("source",):
            out += _leaf_keys(value, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}")
    return out


def suggest(key: str) -> str:
    """`` (did you mean recipe.epochs?)`` for a mistyped key, `` (mask=gmm has it)`` for a key of
    another option of its group, or nothing."""
    import difflib

    owners = keys_by_option()
    if owners.get(key):
        return f" ({', '.join(owners[key])} {'has' if len(owners[key]) == 1 else 'have'} it)"
    keys = sorted(owners)
    last = key.split(".")[-1]
    same_name = [k for k in keys if k.split(".")[-1] == last and k != key]
    close = same_name or difflib.get_close_matches(key, keys, n=1, cutoff=0.75)
    if not close:
        group = key.rpartition(".")[0]
        siblings = {k.split(".")[-1]: k for k in keys if k.rpartition(".")[0] == group}
        close = [siblings[m] for m in difflib.get_close_matches(last, list(siblings), n=2, cutoff=0.6)]
    return f" (did you mean {' or '.join(close)}?)" if close else ""


def _field_type(object_type, key) -> Optional[str]:
    if is_dataclass(object_type):
        for f in fields(object_type):
            if f.name == key:
                return f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    return None


def explain(exc: BaseException) -> Optional[str]:
    """One line for a config that fails the schema (``exc`` from Hydra's composition), or None for
    errors that are not about a key's value (Hydra's own messages stay as they are)."""
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

    cause = exc
    while cause is not None and not isinstance(cause, (ValidationError, ConfigKeyError, ConfigAttributeError)):
        cause = cause.__cause__
    if cause is None:
        return None
    full_key = re.sub(r"\[\d+\]$", "", str(getattr(cause, "full_key", "") or ""))
    first_line = str(getattr(cause, "msg", cause)).splitlines()[0]
    if isinstance(cause, (ConfigKeyError, ConfigAttributeError)):
        if not full_key:
            return None
        group = full_key.rpartition(".")[0]
        where = f"a key of {group}" if group else "a config key"
        return f"{full_key} is not {where}{suggest(full_key)}"
    value = re.search(r"[Vv]alue '(.*?)'", first_line)
    value = value.group(1) if value else "?"
    annotation = _field_type(getattr(cause, "object_type", None), getattr(cause, "key", None))
    if annotation is None and getattr(cause, "ref_type", None) is not None:
        annotation = re.sub(r"typing\.", "", str(cause.ref_type))
    takes = describe_type(annotation) if annotation else first_line
    return f"{full_key}={value}: {full_key} takes {takes}"


__all__ = ["Choice", "Config", "SCHEMAS", "register", "check", "check_device", "describe_type",
           "at_least", "fraction", "probability", "explain", "suggest", "known_keys"]
