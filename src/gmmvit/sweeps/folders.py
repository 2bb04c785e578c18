"""Run folders read back from ``multirun/``: what each run is, how far it got, how it ended.

A run folder holds ``metrics.json`` and/or ``config.yaml`` (``gmmvit.run.records``); its state is
read from them and from the run's lock (``gmmvit.run.runlock``): a live trainer is ``running`` at
once, a dead one ``incomplete``, and only without a lock does the files' age decide. Every reader of
many runs (``make table``, ``make status``, ``make dashboard``, ``make paper DRY=1``) starts here.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from gmmvit.run import runlock
from gmmvit.run.records import METRICS, read_back, read_json
from gmmvit.run.tracking import flatten

CONFIG = "config.yaml"


def _load_yaml(path: Path) -> dict:
    try:
        from omegaconf import OmegaConf
        return read_back(OmegaConf.to_container(OmegaConf.load(path), resolve=False) or {})
    except Exception:
        return {}


@dataclass
class Run:
    path: Path
    model: str
    mask: str
    dataset: str
    seed: object
    state: str                      # finished | running | failed | incomplete
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

    @property
    def label(self) -> str:
        return f"{self.model}/{self.mask}{variant_text(self.variant)}/{self.dataset} seed {self.seed}"


def is_run_dir(path: Path) -> bool:
    return (path / METRICS).is_file() or (path / CONFIG).is_file()


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
        dirnames[:] = sorted(d for d in dirnames if d not in ("wandb", "masks", ".hydra"))
    return found


def read_run(path: Path, stale_after: Optional[float] = None, now: Optional[float] = None) -> Run:
    now = time.time() if now is None else now
    metrics = read_json(path / METRICS) or {}
    config = _load_yaml(path / CONFIG) if (path / CONFIG).is_file() else {}
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
    seed = pick("seed", ("seed",))
    epochs = metrics.get("epochs") or (config.get("recipe") or {}).get("epochs")
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
        state = "incomplete" if epochs and done < epochs else "finished"
    elif status == "failed":
        state = "failed"
    else:                       # "running", or no metrics.json yet (config written, job starting)
        state = "running" if age <= stale_after else "incomplete"
    held = runlock.trainer(path, now=now)
    trainer = None
    if held is not None and status not in ("finished", "failed"):
        # the run's lock knows better than the files' age: a killed trainer shows at once, a slow
        # epoch never looks stale
        alive, trainer = held
        state = "running" if alive else "incomplete"
    best = final.get("best_top1")
    last = final.get("final_top1")
    scores = [r["test_top1"] for r in history if r.get("test_top1") is not None]
    if best is None and scores:
        best = max(scores)
    if last is None and scores:
        last = scores[-1]
    return Run(path=path, model=str(model), mask=str(mask), dataset=str(dataset), seed=seed, state=state,
               epochs=epochs, done=done, best=_num(best), final=_num(last),
               params=metrics.get("params") or final.get("params"), macs=metrics.get("macs") or final.get("macs"),
               reason=metrics.get("reason"), age_s=age, config=flatten(config), trainer=trainer)


def _num(x) -> Optional[float]:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def variant_text(variant: tuple) -> str:
    return f" [{', '.join(f'{k}={v}' for k, v in variant)}]" if variant else ""


def collect(paths: list[Path], stale_after: Optional[float] = None) -> dict[Path, list[Run]]:
    sweeps: dict[Path, list[Run]] = defaultdict(list)
    for root in paths:
        for run_dir in find_run_dirs(root):
            sweeps[run_dir.parent].append(read_run(run_dir, stale_after))
    return dict(sorted(sweeps.items()))


def collect_sweeps(paths: list[Path], prog: str, stale_after: Optional[float] = None) -> dict[Path, list[Run]]:
    """``collect`` over the paths that exist; when no run is found, one line on stderr saying so
    (the command-line tools' shared start: table, status, dashboard)."""
    sweeps = collect([p for p in paths if p.exists()], stale_after)
    if not sweeps:
        print(f"{prog}: no runs under {' '.join(map(str, paths))}", file=sys.stderr)
    return sweeps
