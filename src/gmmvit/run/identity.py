"""A run is what its config says: ``config.yaml`` is written once, when the run starts, and a relaunch
into the folder whose config differs in anything that changes what is trained is refused in one line
naming each differing key with both values. Only the speed settings (``gmmvit.catalog.SPEED_SETTINGS``)
and bookkeeping that names no training setting may differ between launches of one run.

Each checkpoint records the config it was trained with too (``as_recorded``): a relaunch beside a
checkpoint whose ``config.yaml`` is missing, empty or damaged is compared against that record and the
file written again from it (the damaged one kept aside); with no record to compare against, it is
refused in one line rather than trusted."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Optional

from omegaconf import DictConfig, OmegaConf

from gmmvit.catalog import SPEED_SETTINGS
from gmmvit.errors import ConfigError
from gmmvit.run.records import CHECKPOINT, METRICS, PREVIOUS_CHECKPOINT, current_targets, load_checkpoint
from gmmvit.run.repair import keep_aside

CONFIG = "config.yaml"
TRAINED_GROUPS = ("model", "mask", "dataset", "recipe")  # the groups every recorded config holds
# where the run lives and how it is logged or made reproducible, not what it trains
BOOKKEEPING = ("sweep", "gain_reference", "run_dir", "experiment", "deterministic")
BOOKKEEPING_PREFIXES = ("logger.", "paths.", "hydra.")
BOOKKEEPING_SUFFIXES = (".root",)  # where a dataset's files are on this machine


class DifferentRun(ConfigError):
    """The folder holds a run of another config."""


def _flat(node, prefix: str = "") -> dict:
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: node}


def trained(config: dict) -> dict:
    """The flattened keys of ``config`` that change what is trained."""
    return {k: v for k, v in _flat(current_targets(config)).items()
            if k.split(".")[0] not in SPEED_SETTINGS and k not in BOOKKEEPING
            and not k.startswith(BOOKKEEPING_PREFIXES) and not k.endswith(BOOKKEEPING_SUFFIXES)}


def differences(recorded: dict, current: dict) -> list[tuple[str, object, object]]:
    """(key, recorded value, current value) for each training key both configs set differently. A key
    only one of them has was added or removed by a change of gmmvit, not by the user: it is left out."""
    old, new = trained(recorded), trained(current)
    return [(k, old[k], new[k]) for k in sorted(old.keys() & new.keys()) if old[k] != new[k]]


def read_config(path: Path, groups=()) -> tuple[Optional[dict], Optional[str]]:
    """(the config ``path`` records, None), or (None, why it records none: ``is missing``, ``is empty``...).
    Every reader of a run's ``config.yaml`` goes through here; ``groups``: those it must record."""
    path = Path(path)
    if not path.is_file():
        return None, "is missing"
    try:
        config = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except Exception as exc:
        return None, f"cannot be read ({' '.join(str(exc).split())[:120]})"
    if not config:
        return None, "is empty"
    if not isinstance(config, dict):
        return None, f"holds a {type(config).__name__}, not a config"
    for group in TRAINED_GROUPS:
        if group in config and not isinstance(config[group], dict):
            return None, f"has the wrong shape: {group} is {config[group]!r:.40}"
    if "seed" in config and not isinstance(config["seed"], (int, str)):
        return None, f"has the wrong shape: seed is {config['seed']!r:.40}"
    missing = [group for group in groups if group not in config]
    if missing:
        return None, f"has the wrong shape: no {', '.join(missing)}"
    return config, None


def as_recorded(cfg: DictConfig) -> dict:
    """``cfg`` as ``config.yaml`` and each checkpoint record it: plain types, resolved."""
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)


def _has_checkpoint(run_dir: Path) -> bool:
    return any((Path(run_dir) / name).exists() for name in (CHECKPOINT, PREVIOUS_CHECKPOINT))


def _write_again(path: Path, fault: str, config: dict, source: str) -> None:
    kept = keep_aside(path) if path.exists() else None
    OmegaConf.save(OmegaConf.create(config), path)
    print(f"[gmmvit] {path} {fault}: written again from {source}"
          f"{f' (the old file kept as {kept.name})' if kept else ''}", flush=True)


def _checkpoint_config(run_dir: Path, path: Path, fault: str) -> Optional[dict]:
    """The config the run's checkpoint records, its ``config.yaml`` written again from it; None where
    nothing was trained; ``ConfigError`` where a checkpoint records none (written by an earlier gmmvit)."""
    if not _has_checkpoint(run_dir):
        return None
    recorded = (load_checkpoint(run_dir) or {}).get("config")
    if not isinstance(recorded, dict):
        raise ConfigError(f"{path} {fault} and the checkpoint of {run_dir} does not record the config it trained "
                          f"with, so nothing shows this launch continues it: restore {path}, or delete {run_dir} "
                          "to retrain this run")
    return recorded


def same_run_or_refuse(cfg: DictConfig, run_dir: Path) -> None:
    """``DifferentRun`` when ``run_dir`` already records a config that trains something else."""
    run_dir = Path(run_dir)
    path = run_dir / CONFIG
    recorded, fault = read_config(path, groups=TRAINED_GROUPS)
    from_checkpoint = recorded is None
    if from_checkpoint:
        recorded = _checkpoint_config(run_dir, path, fault)
        if recorded is None:
            return
    current = as_recorded(cfg)
    diffs = differences(recorded, current)
    if diffs:
        shown = "; ".join(f"{k}={old} there, {new} now" for k, old, new in diffs[:4])
        more = f" (and {len(diffs) - 4} more)" if len(diffs) > 4 else ""
        raise DifferentRun(f"{run_dir} holds a run of another config: {shown}{more}; relaunch with its values, "
                           "or give this config its own folder (sweep=NEW_NAME)")
    if from_checkpoint:
        _write_again(path, fault, recorded, "the config its checkpoint records")


def twin_of(cfg: DictConfig, run_dir: Path) -> Optional[Path]:
    """The folder beside ``run_dir`` that already holds ``cfg``'s run under another name, or None.
    Hydra names a folder by how the overrides are spelled, so a default spelled out (``seed=0``,
    ``mask=none``: ``-m seed=0,1,2`` to add seeds to a sweep launched without one) names a second
    folder for a run already trained. Only a folder that records nothing yet looks for its twin: a run
    with a record of its own stays where it is."""
    run_dir = Path(run_dir)
    if any((run_dir / name).exists() for name in (CONFIG, METRICS, CHECKPOINT, PREVIOUS_CHECKPOINT)):
        return None
    current = trained(as_recorded(cfg))
    for sibling in sorted(run_dir.parent.glob(f"*/{CONFIG}")):
        if sibling.parent == run_dir or sibling.parent.is_symlink():  # a link names a twin found before
            continue
        recorded, _ = read_config(sibling, groups=TRAINED_GROUPS)
        # every training key alike, not only those both have (as a relaunch compares): a key one of
        # them adds (+recipe.optimizer.betas=...) trains something else
        if recorded is not None and trained(recorded) == current:
            return sibling.parent
    return None


def link_to_twin(run_dir: Path, twin: Path) -> None:
    """``run_dir`` as a link to ``twin``, so that every reader of the sweep's job list (``make status``,
    ``make paper DRY=1``, a relaunch) finds the run there. Only a folder holding nothing but Hydra's
    ``.hydra/`` copy of the job's overrides is replaced."""
    run_dir = Path(run_dir)
    if run_dir.is_dir() and not run_dir.is_symlink():
        if any(p.name != ".hydra" for p in run_dir.iterdir()):
            return
        shutil.rmtree(run_dir)
    try:
        os.symlink(twin.name, run_dir, target_is_directory=True)  # relative: the sweep folder may move
    except FileExistsError:
        pass  # another launch of this job linked it first


def record_config(cfg: DictConfig, run_dir: Path) -> None:
    """``config.yaml`` as the run starts; a relaunch (resume, other speed settings) leaves it alone. One
    left damaged beside no checkpoint (nothing trained yet) is kept aside and written again."""
    path = Path(run_dir) / CONFIG
    recorded, fault = read_config(path)
    if recorded is not None:
        return
    if path.exists():
        _write_again(path, fault, as_recorded(cfg), "this launch's config")
    else:
        OmegaConf.save(cfg, path, resolve=True)


def in_a_sweep() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def refuse_or_skip(exc: DifferentRun) -> None:
    """In a sweep the refused job is one line and the sweep goes on; alone it ends the run (exit 2)."""
    if not in_a_sweep():
        raise exc
    print(f"gmmvit: error: {exc}; skipping this job", file=sys.stderr, flush=True)
