"""A run is what its config says: ``config.yaml`` is written once, when the run starts, and a relaunch
into the folder whose config differs in anything that changes what is trained is refused in one line
naming each differing key with both values. Only the speed settings (``gmmvit.catalog.SPEED_SETTINGS``)
and bookkeeping that names no training setting may differ between launches of one run."""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from gmmvit.catalog import SPEED_SETTINGS
from gmmvit.errors import ConfigError
from gmmvit.run.records import current_targets

CONFIG = "config.yaml"
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


def same_run_or_refuse(cfg: DictConfig, run_dir: Path) -> None:
    """``DifferentRun`` when ``run_dir`` already records a config that trains something else."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        return
    try:
        recorded = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except Exception as exc:
        raise ConfigError(f"{path} cannot be read ({' '.join(str(exc).split())[:120]}); restore it, or delete "
                          f"{run_dir} to retrain this run") from None
    current = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    diffs = differences(recorded if isinstance(recorded, dict) else {}, current)
    if diffs:
        shown = "; ".join(f"{k}={old} there, {new} now" for k, old, new in diffs[:4])
        more = f" (and {len(diffs) - 4} more)" if len(diffs) > 4 else ""
        raise DifferentRun(f"{run_dir} holds a run of another config: {shown}{more}; relaunch with its values, "
                           "or give this config its own folder (sweep=NEW_NAME)")


def record_config(cfg: DictConfig, run_dir: Path) -> None:
    """``config.yaml`` as the run starts; a relaunch (resume, other speed settings) leaves it alone."""
    path = Path(run_dir) / CONFIG
    if not path.exists():
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
