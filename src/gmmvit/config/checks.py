"""What the config's types cannot say - ranges, one key against another, the machine - checked in
one place, ``check(cfg)``, before a run reads any data (``gmmvit.config.callbacks.Preflight`` calls it
before a sweep and before each job)."""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from typing import Optional

import torch
from omegaconf import DictConfig, OmegaConf

from gmmvit.config.buildable import build_problem, key_problem
from gmmvit.config.data_checks import check_dataset_facts, check_full_batch
from gmmvit.config.refusals import GROUPS, group_options, suggest
from gmmvit.config.schema import DEVICE, MIXED_CHOICES, Pool
from gmmvit.errors import ConfigError


def _problem(key: str, value, spec) -> Optional[str]:
    if value is None:
        return None
    if "at_least" in spec and value < spec["at_least"]:
        return f"{key}={value}: {key} must be >= {spec['at_least']}"
    if "at_most" in spec and value > spec["at_most"]:
        return f"{key}={value}: {key} must be <= {spec['at_most']}"
    if "above" in spec and value <= spec["above"]:
        return f"{key}={value}: {key} must be > {spec['above']}{' or null' if spec.get('optional') else ''}"
    if spec.get("fraction") and not 0 < value <= 1:
        return f"{key}={value}: {key} must be in (0, 1]"
    if spec.get("probability") and not 0 <= value <= 1:
        return f"{key}={value}: {key} must be in [0, 1]"
    if spec.get("held_out") and not 0 <= value < 1:
        return f"{key}={value}: {key} must be in [0, 1) (1 would hold out every training image)"
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


def _sigma_init(mask: DictConfig) -> Optional[str]:
    value = mask.get("sigma_init")
    if value is None or (len(value) == 2 and value[1] >= 0):
        return None
    return f"mask.sigma_init={list(value)}: mask.sigma_init takes [mean, std] with std >= 0 (the authors': [10.0, 10.0])"


def check(cfg: DictConfig, machine: bool = True) -> None:
    """Everything about ``cfg`` that its types cannot say; ``ConfigError`` (one line) at the first
    problem. Called before a run reads any data; ``machine``: also whether this machine has the
    device asked for."""
    missing = [group for group in GROUPS if OmegaConf.is_missing(cfg, group) or group not in cfg]
    if missing:
        group = missing[0]
        raise ConfigError(f"{group} is a required group: keep it, or pick one of {', '.join(group_options(group))} "
                          f"({group}=NAME), not ~{group}")
    problem = _ranges(cfg, "") or _sigma_init(cfg.mask)
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
    for key, choices in MIXED_CHOICES.items():
        if str(cfg[key]).lower() not in choices:
            raise ConfigError(f"{key}={cfg[key]}: {key} takes one of {', '.join(choices)}")
    workers = cfg.workers
    if workers != "auto" and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 0):
        raise ConfigError(f"workers={workers}: workers takes auto or a whole number >= 0")
    pool = cfg.model.get("pool") if isinstance(cfg.model, DictConfig) else None
    if pool is not None and pool not in [p.value for p in Pool]:
        raise ConfigError(f"model.pool={pool}: model.pool takes one of {', '.join(p.value for p in Pool)}")
    check_sweep_name(cfg.get("sweep"))
    check_fused_settings(cfg)
    problem = key_problem(cfg) or build_problem(cfg)  # the network, built once on the meta device
    if problem:
        raise ConfigError(problem)
    check_dataset_facts(cfg.dataset)
    check_full_batch(cfg)
    check_device(str(cfg.device), machine)


def check_fused_settings(cfg: DictConfig) -> None:
    """A setting that insists on what a fused group (``fused`` > 1) cannot do is refused before any
    job starts, as ``train()`` refuses it where the machine cannot: trained fused, the run would
    silently lack what was insisted on."""
    size = cfg.get("fused", 1)
    if size > 1 and not _single_run() and str(cfg.get("step_graph", False)).lower() == "true":
        raise ConfigError(f"step_graph=true: a fused group (fused={size}) does not capture its step as one CUDA "
                          "graph; set step_graph=auto (the graphed step where a job trains alone) or fused=1")


def _single_run() -> bool:
    """Hydra runs one run (no ``-m``): ``fused`` forms no group there, the run trains alone."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.RUN


def check_sweep_name(sweep) -> None:
    """``sweep`` names a folder under multirun/: runs outside it, or straight in it, are runs every
    reader misses or takes for a sweep of their own."""
    text = "" if sweep is None else str(sweep)
    if any(not part.strip() or part in (".", "..") for part in text.split("/")):  # "/abs" starts with ""
        raise ConfigError(f"sweep={text!r}: a sweep lives inside multirun/; use sweep=NAME or sweep=GROUP/NAME "
                          "(each part a name: not empty, blank, '.' or '..'; not an absolute path)")


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
