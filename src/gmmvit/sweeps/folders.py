"""Run folders read back from ``multirun/``: what each run is, how far it got, how it ended.

A run folder holds ``metrics.json`` and/or ``config.yaml`` (``gmmvit.run.records``); its state is
read from them and from the run's lock (``gmmvit.run.runlock``): a live trainer is ``running`` at
once, a dead one ``stopped``, and only without a lock does the files' age decide. Every reader of
many runs (``make table``, ``make status``, ``make dashboard``, ``make paper DRY=1``) starts here.
"""

from __future__ import annotations

import math
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from gmmvit.errors import ConfigError
from gmmvit.run import runlock
from gmmvit.run import metrics_schema
from gmmvit.run.figures import MASKS_DIR
from gmmvit.run.identity import CONFIG, read_config
from gmmvit.run.records import METRICS, RESUME, read_back
from gmmvit.run.tracking import WANDB_DIR, flatten



def _load_yaml(path: Path) -> tuple[dict, Optional[str]]:
    """(config, None), or ({}, why it cannot be read)."""
    config, fault = read_config(path)
    return (read_back(config), None) if fault is None else ({}, f"config.yaml {fault}")


def scalar(value):
    """A list or dict value (``mask.sigma_init=[10.0,10.0]``) as the text an override writes, so that it
    groups, sorts and prints like a number or a word."""
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(str(scalar(v)) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{scalar(v)}" for k, v in value.items()) + "}"
    return value


@dataclass
class Run:
    path: Path
    model: str
    mask: str
    dataset: str
    seed: object
    state: str                      # one of STATES (unreadable: reason says why)
    epochs: Optional[int]
    done: int
    best: Optional[float]
    final: Optional[float]
    params: Optional[int]
    macs: Optional[int]
    reason: Optional[str] = None
    age_s: float = 0.0
    config: dict = field(default_factory=dict)
    variant: tuple = ()
    trainer: Optional[str] = None   # "pid P on HOST since T" from the run's lock, while it has one
    at_best_val: Optional[float] = None  # dataset.val_fraction > 0: the test top-1 at the best validation epoch
    environment: Optional[dict] = None  # what made it (gmmvit.run.provenance), None before it was recorded
    metrics: dict = field(default_factory=dict)  # its metrics.json, of the record's shape ({} if none)

    @property
    def label(self) -> str:
        if self.state == "unreadable":
            return str(self.path)
        return f"{self.model}/{self.mask}{variant_text(self.variant)}/{self.dataset} seed {self.seed}"


# every reader names a run's state with these words; "stopped" is any run that ended before its last
# epoch and resumes when relaunched (Ctrl-C, SIGTERM, a killed or silent trainer)
STATES = ("finished", "running", "stopped", "failed", "unreadable")


def stopped_detail(run: Run) -> str:
    """A stopped run in words, the same in ``make status``, ``make eval`` and ``make locality``."""
    return f"stopped at {run.done}/{run.epochs or '?'} epochs ({RESUME})"


HYDRA_RECORD = ".hydra"  # Hydra's own copy of a job's config, unresolved: never a run folder itself


def is_run_dir(path: Path) -> bool:
    if path.name == HYDRA_RECORD:
        return False
    return (path / METRICS).is_file() or ((path / CONFIG).is_file() and not _composes(path / CONFIG))


def _composes(config: Path) -> bool:
    """Whether ``config`` is a Hydra primary config (``conf/config.yaml``: a ``defaults`` list), which a
    run's resolved record never holds: a reader pointed at the repository does not take ``conf/`` for a run."""
    try:
        with open(config) as f:
            return any(line.startswith("defaults:") for line in f)
    except (OSError, UnicodeDecodeError):
        return False


def run_holding(path: Path) -> Optional[Path]:
    """The run folder ``path`` lies inside (its ``.hydra``, ``eval``, ``analysis``, ``masks``, ``wandb``
    folders), or None. Only a folder a run wrote counts (``metrics.json``, or ``config.yaml`` beside
    ``.hydra/``), so a stray ``config.yaml`` above a sweep does not."""
    spelt = Path(os.path.normpath(os.path.abspath(path))).parents  # the run named as the user named it
    for level, parent in enumerate(list(Path(path).resolve().parents)[:3]):
        if (parent / METRICS).is_file() or ((parent / CONFIG).is_file() and (parent / HYDRA_RECORD).is_dir()):
            return Path(os.path.relpath(spelt[level])) if not Path(path).is_absolute() else spelt[level]
    return None


def check_target(path: Path, where: str) -> None:
    """A folder a command was pointed at, refused in one line (``ConfigError``, ending in ``where``: what
    to give) when it is absent, a file, or a folder inside a run folder."""
    if not path.exists():
        broken = " (a broken symbolic link)" if path.is_symlink() else ""
        raise ConfigError(f"{path} does not exist{broken}; {where}")
    if not path.is_dir():
        raise ConfigError(f"{path} is a file, not a folder; {where}")
    run = run_holding(path)
    if run is not None:
        raise ConfigError(f"{path} is a folder inside the run folder {run}; {where}")


def find_run_dirs(root: Path) -> list[Path]:
    root = Path(root)
    if is_run_dir(root):
        return [root]
    found = []
    for dirpath, dirnames, _ in os.walk(root):
        here = Path(dirpath)
        if here != root and is_run_dir(here):
            found.append(here)
            dirnames[:] = []
            continue
        dirnames[:] = sorted(d for d in dirnames if d not in (WANDB_DIR, MASKS_DIR) and not d.startswith("."))
    return found


def read_run(path: Path, stale_after: Optional[float] = None, now: Optional[float] = None) -> Run:
    now = time.time() if now is None else now
    metrics, bad_metrics = metrics_schema.read_metrics(path / METRICS)
    metrics = metrics or {}
    config, bad_config = _load_yaml(path / CONFIG) if (path / CONFIG).is_file() else ({}, None)
    if bad_metrics or bad_config:
        return unreadable(path, f"metrics.json {bad_metrics}" if bad_metrics else bad_config)
    meta = metrics.get("meta") or {}

    def pick(meta_key, cfg_path):
        if meta.get(meta_key) is not None:
            return meta[meta_key]
        node = config
        for k in cfg_path:
            node = node.get(k) if isinstance(node, dict) else None
        return node

    model = pick("model", ("model", "name")) or "?"
    mask = pick("mask", ("mask", "name")) or "?"
    dataset = pick("dataset", ("dataset", "name")) or "?"
    seed = scalar(pick("seed", ("seed",)))
    epochs = metrics.get("epochs") or pick("epochs", ("recipe", "epochs"))
    epochs = epochs if isinstance(epochs, int) and not isinstance(epochs, bool) else None
    history = metrics.get("history") or []
    done = len(history)
    final = metrics.get("final") or {}
    status = metrics.get("status")
    newest = max((p.stat().st_mtime for p in (path / METRICS, path / CONFIG) if p.exists()), default=now)
    age = max(0.0, now - newest)
    if stale_after is None:     # a run that has not written for 3 of its longest epochs is not running
        longest = max((r.get("epoch_s") or 0.0 for r in history), default=0.0)
        stale_after = max(600.0, 3 * longest) if history else 6 * 3600.0

    if status == "finished":
        state = "stopped" if epochs and done < epochs else "finished"
    elif status == "failed":
        state = "failed"
    elif status == "stopped":   # Ctrl-C or SIGTERM, written by the trainer as it left
        state = "stopped"
    else:                       # "running", or no metrics.json yet (config written, job starting)
        state = "running" if age <= stale_after else "stopped"
    held = runlock.trainer(path, now=now)
    trainer = None
    if held is not None and status not in ("finished", "failed"):
        # the run's lock knows better than the files' age: a killed trainer shows at once, a slow
        # epoch never looks stale
        alive, trainer = held
        state = "running" if alive else "stopped"
    best = final.get("best_top1")
    last = final.get("final_top1")
    scores = [r["test_top1"] for r in history if r.get("test_top1") is not None]
    if best is None and scores:
        best = max(scores)
    if last is None and scores:
        last = scores[-1]
    at_best_val = final.get("test_top1_at_best_val")
    validated = [r for r in history if r.get("val_top1") is not None]
    if at_best_val is None and validated:
        at_best_val = max(validated, key=lambda r: r["val_top1"])["test_top1"]
    return Run(path=path, model=str(model), mask=str(mask), dataset=str(dataset), seed=seed, state=state,
               epochs=epochs, done=done, best=_num(best), final=_num(last),
               params=metrics.get("params") or final.get("params"), macs=metrics.get("macs") or final.get("macs"),
               reason=metrics.get("reason"), age_s=age, config=flatten(config),
               trainer=trainer, at_best_val=_num(at_best_val), environment=metrics.get("environment"), metrics=metrics)


def unreadable(path: Path, why: str) -> Run:
    """A folder no reader can use, listed with why (never a crash of the reader)."""
    return Run(path=path, model="?", mask="?", dataset="?", seed=None, state="unreadable", epochs=None, done=0,
               best=None, final=None, params=None, macs=None, reason=why)


def _num(x) -> Optional[float]:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def variant_text(variant: tuple) -> str:
    return f" [{', '.join(f'{k}={v}' for k, v in variant)}]" if variant else ""


def read_any(path: Path, stale_after: Optional[float] = None) -> Run:
    """``read_run``, and whatever a folder holds, a Run: an unreadable one says why."""
    try:
        return read_run(path, stale_after)
    except Exception as exc:
        return unreadable(path, f"{type(exc).__name__}: {' '.join(str(exc).split())[:120]}")


def collect(paths: list[Path], stale_after: Optional[float] = None) -> dict[Path, list[Run]]:
    sweeps: dict[Path, list[Run]] = defaultdict(list)
    for root in paths:
        for run_dir in find_run_dirs(root):
            sweeps[run_dir.parent].append(read_any(run_dir, stale_after))
    return dict(sorted(sweeps.items()))


WHERE_SWEEPS_ARE = "give a sweep folder (multirun/NAME), a folder of sweeps (multirun) or a run folder"


def collect_sweeps(paths: list[Path], stale_after: Optional[float] = None) -> dict[Path, list[Run]]:
    """``collect`` over the folders a command was given (the command-line readers' shared start: table,
    status, dashboard); a path that is no folder (``check_target``), or no run under them, is
    ``ConfigError`` before anything is read or written."""
    for path in paths:
        check_target(path, WHERE_SWEEPS_ARE)
    sweeps = collect(paths, stale_after)
    if not sweeps:
        raise ConfigError(f"no runs under {' '.join(map(str, paths))} (no folder holds metrics.json or "
                          f"config.yaml); {WHERE_SWEEPS_ARE}")
    return sweeps


def read_whole(sweep_dir: Path, paths: list[Path]) -> bool:
    """Whether the runs ``collect`` found in ``sweep_dir`` are all of its runs: the command named that
    folder or one above it, not only run folders in it. A sweep's own files (``table.*``, its W&B
    view) are written from the whole sweep only."""
    sweep_dir = Path(sweep_dir).resolve()
    return any(p.resolve() == sweep_dir or p.resolve() in sweep_dir.parents for p in map(Path, paths))


def csv(text: str) -> list[str]:
    """A comma-separated command-line value as its items."""
    return [t.strip() for t in str(text).split(",") if t.strip()]


def read_metrics(run_dir: Path) -> Optional[dict]:
    """A run folder's record when it has the record's shape (gmmvit.run.metrics_schema), else None."""
    return metrics_schema.read_metrics(Path(run_dir) / METRICS)[0]
