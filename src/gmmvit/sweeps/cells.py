"""The table's content, from run folders: cells (mean, std, n over seeds of a model x mask x variant
x dataset), gains paired by seed against the reference row, what is missing. ``gmmvit.sweeps.render``
writes it out; ``gmmvit.sweeps.table`` is the command."""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from gmmvit import paper
from gmmvit.catalog import DATASETS, MODELS, SPEED_SETTINGS, TABLE_BOOKKEEPING
from gmmvit.run.provenance import environment_label
from gmmvit.run.records import RESUME
from gmmvit.sweeps.folders import Run, scalar, variant_text
from gmmvit.sweeps.stats import paired_interval, significant

MASK_ORDER = ("none", "gmm", "elm")  # rows: the paper's table lists GMM before ELM
# a cell's epoch: best on the test set (the paper's), best on the validation split (dataset.val_fraction), last
SELECTIONS = ("test", "val", "final")

# settings that never split a cell (where and how a run ran, not what it trained)
IGNORED_KEYS = {*SPEED_SETTINGS, *TABLE_BOOKKEEPING}
DEFAULT_REFERENCE = ("mask=none",)
IGNORED_PREFIXES = ("paths.", "logger.", "hydra.")
IGNORED_SUFFIXES = (".root",)


def parse_reference(items) -> dict:
    """``["mask=none", "model.pool=token"]`` -> {"mask": "none", "model.pool": "token"}."""
    out = {}
    for item in items or DEFAULT_REFERENCE:
        key, sep, value = str(item).partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def _same(value, spec: str) -> bool:
    """A run's config value against a ``key=value`` text (1.0 == "1.0" == "1", token == "token")."""
    if str(value) == spec:
        return True
    try:
        return float(value) == float(spec)
    except (TypeError, ValueError):
        return False


def _natural(value) -> tuple:
    """Numbers by value (2 before 10), anything else by its text."""
    try:
        return (0, float(value), "")
    except (TypeError, ValueError):
        return (1, 0.0, repr(value))


def _relevant(key: str) -> bool:
    return not (key in IGNORED_KEYS or key.startswith(IGNORED_PREFIXES) or key.endswith(IGNORED_SUFFIXES))


def varied_settings(runs: list[Run]) -> list[str]:
    """The settings (flat config keys) that differ between runs of one model/mask/dataset cell, seeds
    and bookkeeping aside: what an ablation sweeps. The table's rows and the W&B view's groups split by them."""
    groups = defaultdict(list)
    for r in runs:
        groups[(r.model, r.mask, r.dataset)].append(r)
    varying = set()
    for members in groups.values():
        keys = set().union(*(m.config for m in members))
        for k in keys:
            if _relevant(k) and len({repr(m.config.get(k)) for m in members}) > 1:
                varying.add(k)
    return sorted(varying)


def assign_variants(runs: list[Run]) -> None:
    """Settings that differ between runs of one model/mask/dataset cell split it into variants."""
    varying = varied_settings(runs)
    for r in runs:
        r.variant = tuple((k, scalar(r.config.get(k))) for k in varying if k in r.config)


def counted_once(runs: list[Run]) -> tuple[list[Run], list[tuple[Run, Run]]]:
    """(runs, twins): one run per cell and seed, and (kept, left out) for each other folder that holds
    the same run (same cell and seed: the same training config), from a gmmvit that trained it again
    under another spelling of its overrides. Counting both would count one seed twice."""
    by_key = defaultdict(list)
    for r in runs:
        by_key[(r.model, r.mask, r.variant, r.dataset, repr(r.seed))].append(r)
    kept, twins = [], []
    for same in by_key.values():
        same.sort(key=lambda r: (r.state != "finished", -(r.done or 0), str(r.path)))
        kept.append(same[0])
        twins += [(same[0], other) for other in same[1:]]
    keep = {id(r) for r in kept}
    return [r for r in runs if id(r) in keep], twins


def _order(value, order):
    return (order.index(value), "") if value in order else (len(order), str(value))


def _seed_key(s):
    return (0, s, "") if isinstance(s, (int, float)) else (1, 0, str(s))


@dataclass
class Cell:
    values: list            # (seed, value) of finished runs
    seeds_missing: list
    running: list
    failed: list
    stopped: list
    paper: Optional[float] = None

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> Optional[float]:
        return statistics.fmean(v for _, v in self.values) if self.values else None

    @property
    def std(self) -> Optional[float]:
        return statistics.stdev(v for _, v in self.values) if self.n >= 2 else None

    @property
    def delta(self) -> Optional[float]:
        return None if self.mean is None or self.paper is None else self.mean - self.paper


@dataclass
class Gain:
    n: int
    mean: Optional[float]
    low: Optional[float]
    high: Optional[float]
    paper: Optional[float] = None
    seeds: list = field(default_factory=list)

    @property
    def significant(self) -> Optional[bool]:
        return significant(self.low, self.high)

    @property
    def delta(self) -> Optional[float]:
        return None if self.mean is None or self.paper is None else self.mean - self.paper


class SweepTable:
    def __init__(self, folder: Path, runs: list[Run], select: str = "test"):
        self.folder = folder
        self.unreadable = [r for r in runs if r.state == "unreadable"]  # listed under the table, with why
        runs = [r for r in runs if r.state != "unreadable"]
        self.select = select             # one of SELECTIONS: which epoch's test top-1 a cell holds
        self.paper = paper.results()  # {(model, mask): {dataset: top1, params_M, macs_M}}
        assign_variants(runs)
        runs, self.twins = counted_once(runs)
        self.runs = runs
        references = {tuple(r.config["gain_reference"]) for r in runs
                      if isinstance(r.config.get("gain_reference"), list)}
        # runs of presets with other references in one folder: none of theirs can be the table's
        self.mixed_references = sorted(references) if len(references) > 1 else []
        self.reference_items = references.pop() if len(references) == 1 else DEFAULT_REFERENCE
        self.reference = parse_reference(self.reference_items)
        names = {r.config.get("sweep") for r in runs if r.config.get("sweep")}
        self.name = names.pop() if len(names) == 1 else folder.name
        self.datasets = sorted({r.dataset for r in runs}, key=lambda d: _order(d, DATASETS))
        self.models = sorted({r.model for r in runs}, key=lambda m: _order(m, MODELS))
        all_masks = {r.mask for r in runs}
        self.rows: dict[str, list] = {}
        for model in self.models:
            present = {(r.mask, r.variant) for r in runs if r.model == model}
            base_variants = {tuple(p for p in v if not p[0].startswith("mask.")) for _, v in present} or {()}
            for mask in all_masks:           # a mask run elsewhere in the sweep but not for this model
                if not any(m == mask for m, _ in present):
                    present |= {(mask, v) for v in base_variants}
            self.rows[model] = sorted(present, key=self._row_order)
        self.model_datasets = {m: {r.dataset for r in runs if r.model == m} for m in self.models}
        self.expected_seeds = defaultdict(set)
        for r in runs:
            self.expected_seeds[(r.model, r.dataset)].add(r.seed)

    def _row_order(self, row: tuple):
        """Masks in the paper's order; within a mask the reference settings first, then by value."""
        mask, variant = row
        off_reference = any(k in self.reference and not _same(v, self.reference[k]) for k, v in variant)
        return (_order(mask, MASK_ORDER), off_reference, tuple((k, _natural(v)) for k, v in variant))

    def value(self, run: Run) -> Optional[float]:
        return {"test": run.best, "val": run.at_best_val, "final": run.final}[self.select]

    def cell(self, model, mask, variant, dataset) -> Optional[Cell]:
        if dataset not in self.model_datasets[model]:
            return None                      # this model was never run on this dataset: not expected
        members = [r for r in self.runs if (r.model, r.mask, r.variant, r.dataset) == (model, mask, variant, dataset)]
        values = sorted(((r.seed, self.value(r)) for r in members
                         if r.state == "finished" and self.value(r) is not None), key=lambda sv: _seed_key(sv[0]))
        present = {r.seed for r in members}
        missing = sorted(self.expected_seeds[(model, dataset)] - present, key=_seed_key)
        paper = self.paper.get((model, mask), {}).get(dataset) if not variant else None
        return Cell(values=values, seeds_missing=missing,
                    running=[r for r in members if r.state == "running"],
                    failed=[r for r in members if r.state == "failed"],
                    stopped=[r for r in members if r.state == "stopped"], paper=paper)

    def reference_row(self, model, mask, variant) -> Optional[tuple]:
        """The (mask, variant) row this row's gain pairs with: the reference settings where they
        apply, this row's own values elsewhere; None when the sweep has no such row."""
        ref_mask = self.reference.get("mask", mask)
        ours = dict(variant)
        for m, cand in self.rows[model]:
            if not _same(m, ref_mask):
                continue
            theirs = dict(cand)
            if all(self._matches(k, ours, theirs, m != mask) for k in set(ours) | set(theirs)):
                return m, cand
        return None

    def _matches(self, key, ours: dict, theirs: dict, other_mask: bool) -> bool:
        if key in self.reference:
            return key not in theirs or _same(theirs[key], self.reference[key])
        if other_mask and key.startswith("mask."):
            return True                      # the reference's mask has its own settings
        return key in ours and key in theirs and ours[key] == theirs[key]

    def gain(self, model, mask, variant, dataset) -> Optional[Gain]:
        ref = self.reference_row(model, mask, variant)
        if ref is None or ref == (mask, variant):
            return None
        ours, base = self.cell(model, mask, variant, dataset), self.cell(model, ref[0], ref[1], dataset)
        if ours is None or base is None:
            return None
        base_by_seed = dict(base.values)
        pairs = [(s, v - base_by_seed[s]) for s, v in ours.values if s in base_by_seed]
        p_mask = self.paper.get((model, mask), {}).get(dataset)
        p_none = self.paper.get((model, "none"), {}).get(dataset)
        paper = (p_mask - p_none if p_mask is not None and p_none is not None and not variant
                 and ref == ("none", ()) else None)
        if not pairs:
            return Gain(n=0, mean=None, low=None, high=None, paper=paper)
        mean, low, high = paired_interval([d for _, d in pairs])
        return Gain(n=len(pairs), mean=mean, low=low, high=high, paper=paper, seeds=[s for s, _ in pairs])

    def params_macs(self, model, mask, variant) -> tuple[Optional[int], Optional[int]]:
        members = [r for r in self.runs if (r.model, r.mask, r.variant) == (model, mask, variant)
                   and r.params is not None]
        members.sort(key=lambda r: _order(r.dataset, DATASETS))   # CIFAR-10 first, as the paper
        return (members[0].params, members[0].macs) if members else (None, None)

    # --- what is not in the cells ---------------------------------------------------------------
    def notices(self) -> list[str]:
        lines = []
        for r in sorted(self.runs, key=lambda r: (r.state, r.label)):
            if r.state == "running":
                lines.append(f"running: {r.label} ({r.done}/{r.epochs} epochs, updated {_age(r.age_s)} ago)")
            elif r.state == "failed":
                lines.append(f"failed: {r.label}: {r.reason or 'no reason recorded'}")
            elif r.state == "stopped":
                lines.append(f"stopped: {r.label} ({r.done}/{r.epochs} epochs, last written {_age(r.age_s)} "
                             f"ago; {RESUME})")
        for model, rows in self.rows.items():
            for mask, variant in rows:
                for ds in self.datasets:
                    c = self.cell(model, mask, variant, ds)
                    if c is not None and c.seeds_missing:
                        seeds = ", ".join(str(s) for s in c.seeds_missing)
                        lines.append(f"missing: {model}/{mask}{variant_text(variant)}/{ds} seed {seeds}")
        lines += [f"twin: {other.label}: {other.path} holds the same run as {kept.path}; counted once, from there"
                  for kept, other in self.twins]
        return lines + [f"unreadable: {r.path}: {r.reason}" for r in self.unreadable]

    def reference_warning(self) -> Optional[str]:
        """Said under the table when its runs disagree on ``gain_reference``."""
        if not self.mixed_references:
            return None
        named = " | ".join(", ".join(items) for items in self.mixed_references)
        return (f"Warning: its runs name {len(self.mixed_references)} gain references ({named}), so every gain "
                f"pairs with {', '.join(self.reference_items)}; train each preset in a sweep of its own (sweep=NAME)")

    def environments(self) -> dict[str, int]:
        """Each environment that produced a finished run, with how many (most first)."""
        counts = defaultdict(int)
        for r in self.runs:
            if r.state == "finished":
                counts[environment_label(r.environment)] += 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def mixed_cells(self) -> list[str]:
        """The cells whose finished runs come from more than one environment."""
        envs = defaultdict(set)
        for r in self.runs:
            if r.state == "finished":
                envs[f"{r.model}/{r.mask}{variant_text(r.variant)}/{r.dataset}"].add(environment_label(r.environment))
        return [f"{cell} mixes {len(labels)} environments" for cell, labels in sorted(envs.items()) if len(labels) > 1]

    def counts(self) -> dict:
        out = defaultdict(int)
        for r in self.runs + self.unreadable:
            out[r.state] += 1
        return dict(out)


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
