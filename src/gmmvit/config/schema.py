"""The config's schema: one dataclass per config group, registered in Hydra's ConfigStore.

Hydra merges every ``conf/`` file and every override into these dataclasses when it composes a
run, so a value of the wrong type (``seed=abc``), an unknown choice (``precision=fp8``) or an
unknown key (``recipe.epoch=5``) is refused before anything runs; ``gmmvit.config.reporting`` prints the
refusal as one line naming the key, the value and what it accepts (``gmmvit.config.refusals``).
What types cannot say (ranges, one key against another, the machine) is checked by
``gmmvit.config.checks.check(cfg)``, in one place, before a run reads any data.

Every choice is the list of the code that acts on it (the masks', the attention kernels', the data's,
the compiler's, the step's), read here: a value is allowed where it is used, and nowhere else.

Adding a config key: one line in its group's dataclass below (a field with its type and
default), plus ``at_least(...)`` / ``fraction(...)`` for a range; a key of a new choice type gets
a ``Choice`` subclass. Model files and the optimizer stay open (``Any``): their keys go to the
model or optimizer class as they are; a model's are checked against its class's signature and by a
dry build on the meta device (``gmmvit.config.buildable``), the optimizer's ``lr`` and
``weight_decay`` by ``check``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from gmmvit.data.resident import DATA_ON_GPU
from gmmvit.data.authors_ops import AUTOAUGMENT_POLICIES, OPS
from gmmvit.data.transforms import RESIZES
from gmmvit.nn.kernels import ATTENTION_MODES
from gmmvit.nn.masks import COMBINATIONS, PLACEMENTS
from gmmvit.nn.models.checks import POOLS
from gmmvit.run.compiling import COMPILE_CHOICES
from gmmvit.run.step import STEP_GRAPH


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


class WandbMode(Choice):
    auto = "auto"
    online = "online"
    offline = "offline"


def choice(name: str, values) -> type:
    """A ``Choice`` whose members are ``values``, the list of the code that reads the key."""
    return Choice(name, [(str(v), str(v)) for v in values])


Attention = choice("Attention", ATTENTION_MODES)
Combine = choice("Combine", COMBINATIONS)
Placement = choice("Placement", PLACEMENTS)
Pool = choice("Pool", POOLS)
Resize = choice("Resize", RESIZES)
AutoAugmentPolicy = choice("AutoAugmentPolicy", AUTOAUGMENT_POLICIES)
AugOps = choice("AugOps", OPS)

# keys whose values mix words and booleans or numbers (``compile: false``, ``workers: 4``): YAML and
# the command line type those, so they are checked by ``check`` rather than by an enum
MIXED_CHOICES = {"compile": COMPILE_CHOICES, "data_on_gpu": DATA_ON_GPU, "step_graph": STEP_GRAPH}
DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def at_least(low, default=MISSING):
    """A field whose value must be ``>= low`` (checked by ``check``)."""
    return field(default=default, metadata={"at_least": low})


def fraction(default=MISSING):
    """A field whose value must lie in (0, 1] (checked by ``check``)."""
    return field(default=default, metadata={"fraction": True})


def positive(default=MISSING):
    """A field whose value must be ``> 0``, or null where null is its default (checked by ``check``)."""
    return field(default=default, metadata={"above": 0, "optional": default is None})


def between(low, high, default=MISSING):
    """A field whose value must lie in [low, high] (checked by ``check``)."""
    return field(default=default, metadata={"at_least": low, "at_most": high})


def probability(default=MISSING):
    """A field whose value must lie in [0, 1] (checked by ``check``)."""
    return field(default=default, metadata={"probability": True})


def held_out_share(default=MISSING):
    """A share of the training set held out, in [0, 1) (checked by ``check``): all of it leaves none to train."""
    return field(default=default, metadata={"held_out": True})


# --- mask/ ----------------------------------------------------------------------------------------

@dataclass
class MaskConfig:
    name: str = MISSING
    _target_: str = MISSING
    _partial_: bool = True
    combine: Combine = Combine["mul"]
    placement: Placement = Placement["pre"]


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
    resize: Resize = Resize["pad"]
    mean: List[float] = MISSING
    std: List[float] = MISSING
    autoaugment_policy: Optional[AutoAugmentPolicy] = None
    hflip: bool = True
    train_fraction: float = fraction(1.0)
    val_fraction: float = held_out_share(0.0)  # 0 = the paper's protocol (no validation split)


# --- recipe/ --------------------------------------------------------------------------------------

@dataclass
class AugConfig:
    hflip: bool = True
    crop_padding: int = at_least(0, 4)
    autoaugment: bool = True
    random_erasing: float = probability(0.25)
    random_erasing_max_area: float = fraction(0.4)
    random_erasing_min_aspect: float = fraction(0.3)
    ops: AugOps = AugOps["authors"]   # the AutoAugment ops and random erasing: the authors' or torchvision's


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
    grad_clip: Optional[float] = positive(None)  # null = no clipping; clip_grad_norm_ flips gradients below 0
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
    seed: int = between(0, 2**32 - 1, 0)  # what numpy's seed takes
    sweep: str = "default"
    device: str = "auto"  # auto, cpu, cuda, cuda:N (checked by ``check``)
    runs_per_gpu: int = at_least(1, 1)
    fused: int = at_least(1, 1)
    precision: Precision = Precision.auto
    compile: Any = "auto"  # one of COMPILE_CHOICES
    attention: Attention = Attention["auto"]
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


__all__ = ["Choice", "Config", "SCHEMAS", "register", "at_least", "positive", "between", "fraction", "probability", "held_out_share", "MIXED_CHOICES", "DEVICE"]
