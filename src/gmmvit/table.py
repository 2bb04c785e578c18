"""``make table``: a sweep's results as the paper's table, from the run folders alone (no W&B).

    python -m gmmvit.table [SWEEP_DIR ...] [--final] [--stale-after SECONDS]

Every run folder (one holding ``metrics.json`` and/or ``config.yaml``) under the given
folders is read; runs are grouped by the folder that holds them (``multirun/<sweep>/<run>``),
and each sweep gets its table, printed and written into the sweep folder as ``table.md``,
``table.csv``, ``table.tex`` (booktabs) and ``table.png`` (the mask gains with 95% intervals).

Rows are model x mask x whatever else the sweep varied (any setting that differs between runs of
one model/mask/dataset cell, shown as ``[key=value]``: ``model.pool``, ``mask.placement``,
``dataset.train_fraction``, ...), columns the datasets, then params and MACs. A cell is the mean +-
sample std over seeds of the best test top-1 (``--final``: last-epoch top-1), with n. Under each
model, every row's gain over the sweep's reference row, paired by seed, with a 95% t-interval when
>= 2 seeds pair; a gain whose interval contains zero is marked ``n.s.`` (not significant).

The reference row is the authors' setting, named by the runs' ``gain_reference`` (``key=value``
settings; default ``mask=none``, so the paper's grid prints the paper's layout: each mask against
``none``). Settings it does not name pair within their own value: the data-fraction sweep
(``[mask=none]``) pairs each mask with ``none`` at the same fraction, the placement sweep
(``[mask.placement=pre]``) pairs ``post`` with ``pre`` of the same mask.
Where the paper has the model/mask/dataset, its number and our difference to it follow.
Runs that are missing, running, failed (with the reason) or incomplete are marked and listed.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from gmmvit import paper, runlock
from gmmvit.records import METRICS, read_json
from gmmvit.tracking import flatten

CONFIG = "config.yaml"
OUTPUTS = ("table.md", "table.csv", "table.tex", "table.png")

PAPER_DATASETS = ("cifar10", "cifar100", "svhn", "tinyimagenet")
MODEL_ORDER = ("vit", "swin", "cait", "pit", "t2t")
MASK_ORDER = ("none", "gmm", "elm")
DATASET_ORDER = PAPER_DATASETS + ("fashion_mnist", "digits")

# two-sided 95% Student t quantiles t_{0.975, df}
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
         10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110,
         18: 2.101, 19: 2.093, 20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060,
         26: 2.056, 27: 2.052, 28: 2.048, 29: 2.045, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}

# settings that never split a cell (where and how a run ran, not what it trained)
IGNORED_KEYS = {"seed", "run_dir", "sweep", "device", "precision", "compile", "threads", "workers",
                "deterministic", "gain_reference", "attention", "data_on_gpu", "runs_per_gpu"}
DEFAULT_REFERENCE = ("mask=none",)
IGNORED_PREFIXES = ("paths.", "logger.", "hydra.")
IGNORED_SUFFIXES = (".root",)

FOOTER = ("Cells: mean ± sample std over seeds of the {what}, n = finished seeds. {selection} "
          "Gain rows (Δ row − reference row; reference: {reference}): paired by seed, mean difference "
          "with its 95% t-interval [low, high] where at least two seeds pair; n.s. = the interval "
          "contains zero (not significant at 95%). [paper p, Δ d]: the paper's number "
          "(best test top-1, 100 epochs of 3 passes on the full dataset) and ours minus it.")
SELECT_BEST = ("As in the paper, the epoch is selected on the test set (the best test top-1 over all "
               "epochs; there is no validation split), an optimistic estimate: `--final` gives the "
               "last epoch's accuracy.")
SELECT_FINAL = ("`--final`: last-epoch accuracy, no selection on the test set; the paper's numbers "
                "beside it are best-epoch numbers (selected on the test set).")


def t975(df: int) -> float:
    if df in T_975:
        return T_975[df]
    lower = [k for k in T_975 if k <= df]
    return T_975[max(lower)] if df < 1000 else 1.960


def paired_interval(diffs: list[float]) -> tuple[float, Optional[float], Optional[float]]:
    """Mean of paired differences and its 95% t-interval (None, None with fewer than two)."""
    n = len(diffs)
    mean = statistics.fmean(diffs)
    if n < 2:
        return mean, None, None
    half = t975(n - 1) * statistics.stdev(diffs) / math.sqrt(n)
    return mean, mean - half, mean + half


def significant(low: Optional[float], high: Optional[float]) -> Optional[bool]:
    """False when the 95% interval contains zero, True when it excludes it, None without one."""
    if low is None or high is None:
        return None
    return not (low <= 0.0 <= high)


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


# --- reading runs ----------------------------------------------------------------------------------

def _load_yaml(path: Path) -> dict:
    try:
        from omegaconf import OmegaConf
        return OmegaConf.to_container(OmegaConf.load(path), resolve=False) or {}
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
        return f"{self.model}/{self.mask}{_variant_text(self.variant)}/{self.dataset} seed {self.seed}"


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


def _relevant(key: str) -> bool:
    return not (key in IGNORED_KEYS or key.startswith(IGNORED_PREFIXES) or key.endswith(IGNORED_SUFFIXES))


def assign_variants(runs: list[Run]) -> None:
    """Settings that differ between runs of one model/mask/dataset cell split it into variants."""
    groups = defaultdict(list)
    for r in runs:
        groups[(r.model, r.mask, r.dataset)].append(r)
    varying = set()
    for members in groups.values():
        keys = set().union(*(m.config for m in members))
        for k in keys:
            if _relevant(k) and len({repr(m.config.get(k)) for m in members}) > 1:
                varying.add(k)
    for r in runs:
        r.variant = tuple((k, r.config.get(k)) for k in sorted(varying) if k in r.config)


def _variant_text(variant: tuple) -> str:
    return f" [{', '.join(f'{k}={v}' for k, v in variant)}]" if variant else ""


def _order(value, order):
    return (order.index(value), "") if value in order else (len(order), str(value))


def _seed_key(s):
    return (0, s, "") if isinstance(s, (int, float)) else (1, 0, str(s))


# --- the table -------------------------------------------------------------------------------------

@dataclass
class Cell:
    values: list            # (seed, value) of finished runs
    seeds_missing: list
    running: list
    failed: list
    incomplete: list
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
    def __init__(self, folder: Path, runs: list[Run], use_final: bool = False):
        self.folder = folder
        self.runs = runs
        self.use_final = use_final
        self.paper = paper.results()  # {(model, mask): {dataset: top1, params_M, macs_M}}
        assign_variants(runs)
        references = {tuple(r.config["gain_reference"]) for r in runs if r.config.get("gain_reference")}
        self.reference_items = references.pop() if len(references) == 1 else DEFAULT_REFERENCE
        self.reference = parse_reference(self.reference_items)
        names = {r.config.get("sweep") for r in runs if r.config.get("sweep")}
        self.name = names.pop() if len(names) == 1 else folder.name
        self.datasets = sorted({r.dataset for r in runs}, key=lambda d: _order(d, DATASET_ORDER))
        self.models = sorted({r.model for r in runs}, key=lambda m: _order(m, MODEL_ORDER))
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
        return run.final if self.use_final else run.best

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
                    incomplete=[r for r in members if r.state == "incomplete"], paper=paper)

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
        members.sort(key=lambda r: _order(r.dataset, DATASET_ORDER))   # CIFAR-10 first, as the paper
        return (members[0].params, members[0].macs) if members else (None, None)

    # --- what is not in the cells ---------------------------------------------------------------
    def notices(self) -> list[str]:
        lines = []
        for r in sorted(self.runs, key=lambda r: (r.state, r.label)):
            if r.state == "running":
                lines.append(f"running: {r.label} ({r.done}/{r.epochs} epochs, updated {_age(r.age_s)} ago)")
            elif r.state == "failed":
                lines.append(f"failed: {r.label}: {r.reason or 'no reason recorded'}")
            elif r.state == "incomplete":
                lines.append(f"incomplete: {r.label} ({r.done}/{r.epochs} epochs, last written {_age(r.age_s)} "
                             "ago; relaunch the sweep command to resume it)")
        for model, rows in self.rows.items():
            for mask, variant in rows:
                for ds in self.datasets:
                    c = self.cell(model, mask, variant, ds)
                    if c is not None and c.seeds_missing:
                        seeds = ", ".join(str(s) for s in c.seeds_missing)
                        lines.append(f"missing: {model}/{mask}{_variant_text(variant)}/{ds} seed {seeds}")
        return lines

    def counts(self) -> dict:
        out = defaultdict(int)
        for r in self.runs:
            out[r.state] += 1
        return dict(out)


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def fmt_count(x: Optional[float]) -> str:
    if x is None:
        return "–"
    if abs(x) >= 1e9:
        return f"{x / 1e9:.3g}G"
    if abs(x) >= 1e6:
        return f"{x / 1e6:.3g}M"
    if abs(x) >= 1e3:
        return f"{x / 1e3:.3g}K"
    return f"{x:.0f}"


def _signed(x: float) -> str:
    return f"{x:+.2f}"


def cell_text(c: Optional[Cell]) -> str:
    if c is None:
        return "–"
    parts = []
    if c.n:
        parts.append(f"{c.mean:.2f} ± {c.std:.2f} (n={c.n})" if c.std is not None else f"{c.mean:.2f} (n=1)")
    notes = []
    if c.running:
        notes.append(f"{len(c.running)} running")
    if c.incomplete:
        notes.append(f"{len(c.incomplete)} incomplete")
    if c.failed:
        notes.append(f"{len(c.failed)} failed")
    if not c.n and not notes:
        notes.append("missing")                  # no run at all in this cell
    elif c.seeds_missing:
        notes.append("seed " + ",".join(str(s) for s in c.seeds_missing) + " missing")
    if notes:
        parts.append(f"({'; '.join(notes)})" if c.n else "; ".join(notes))
    if c.paper is not None:
        parts.append(f"[paper {c.paper:.2f}" + (f", Δ {_signed(c.delta)}]" if c.delta is not None else "]"))
    return " ".join(parts)


def gain_text(g: Optional[Gain]) -> str:
    if g is None:
        return "–"
    if g.n == 0:
        text = "no paired seeds"
    elif g.low is None:
        text = f"{_signed(g.mean)} (n=1 pair, no interval)"
    else:
        text = f"{_signed(g.mean)} [{_signed(g.low)}, {_signed(g.high)}] (n={g.n})"
    if g.paper is not None:
        text += f" [paper {_signed(g.paper)}" + (f", Δ {_signed(g.delta)}]" if g.delta is not None else "]")
    if g.significant is False:
        text += " n.s."
    return text


# --- renderers -------------------------------------------------------------------------------------

def table_rows(t: SweepTable):
    """(kind, model, mask label, {dataset: text}, params text, macs text) in display order."""
    for model in t.models:
        for mask, variant in t.rows[model]:
            params, macs = t.params_macs(model, mask, variant)
            pp = t.paper.get((model, mask)) if not variant else None
            # the paper's size only beside a model of the paper's size (not a shrunk demo model)
            if pp and not (params and 0.5 < params / (pp["params_M"] * 1e6) < 2):
                pp = None
            ptxt = fmt_count(params) + (f" [paper {pp['params_M']}M]" if pp else "")
            mtxt = fmt_count(macs) + (f" [paper {pp['macs_M']}M]" if pp else "")
            yield ("acc", model, mask + _variant_text(variant), variant,
                   {d: t.cell(model, mask, variant, d) for d in t.datasets}, ptxt, mtxt)
        for mask, variant in t.rows[model]:
            ref = t.reference_row(model, mask, variant)
            if ref is None or ref == (mask, variant):
                continue
            p1, _ = t.params_macs(model, mask, variant)
            p0, _ = t.params_macs(model, *ref)
            dparams = f"{p1 - p0:+d}" if p1 is not None and p0 is not None else "–"
            yield ("gain", model, f"Δ {mask}{_variant_text(variant)} − {ref[0]}{_variant_text(ref[1])}", variant,
                   {d: t.gain(model, mask, variant, d) for d in t.datasets}, dparams, "")


def render_markdown(t: SweepTable) -> str:
    what = "last-epoch test top-1 (%)" if t.use_final else "best test top-1 (%)"
    out = [f"## {t.name}: {what}  ({t.folder})", ""]
    header = ["model", "mask"] + t.datasets + ["params", "MACs"]
    out.append("| " + " | ".join(header) + " |")
    out.append("|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|")
    for kind, model, mask, _, cells, ptxt, mtxt in table_rows(t):
        texts = [cell_text(cells[d]) if kind == "acc" else gain_text(cells[d]) for d in t.datasets]
        out.append("| " + " | ".join([model if kind == "acc" else "", mask] + texts + [ptxt, mtxt]) + " |")
    counts = t.counts()
    out += ["", "Runs: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) + "."]
    notices = t.notices()
    if notices:
        out += ["", "Not in the cells:"] + [f"- {line}" for line in notices]
    out += ["", FOOTER.format(what=what.replace(" (%)", ""), selection=SELECT_FINAL if t.use_final else SELECT_BEST,
                              reference=", ".join(t.reference_items))]
    return "\n".join(out) + "\n"


def write_csv(t: SweepTable, path: Path) -> None:
    cols = ["sweep", "model", "mask", "variant", "dataset", "row", "metric", "mean", "std", "n", "ci95_low",
            "ci95_high", "seeds", "missing_seeds", "running", "incomplete", "failed", "paper", "delta_to_paper",
            "params", "macs", "reference", "significant"]
    metric = "final_top1" if t.use_final else "best_top1"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for model in t.models:
            for mask, variant in t.rows[model]:
                params, macs = t.params_macs(model, mask, variant)
                for d in t.datasets:
                    c = t.cell(model, mask, variant, d)
                    if c is None:
                        continue
                    w.writerow([t.name, model, mask, _variant_text(variant).strip(" []"), d, "accuracy", metric,
                                c.mean, c.std, c.n, None, None, " ".join(str(s) for s, _ in c.values),
                                " ".join(map(str, c.seeds_missing)), len(c.running), len(c.incomplete),
                                len(c.failed), c.paper, c.delta, params, macs, None, None])
                    g = t.gain(model, mask, variant, d)
                    if g is not None:
                        ref = t.reference_row(model, mask, variant)
                        kind = "gain_vs_none" if ref == ("none", tuple(
                            p for p in variant if not p[0].startswith("mask."))) else "gain_vs_reference"
                        w.writerow([t.name, model, mask, _variant_text(variant).strip(" []"), d, kind,
                                    metric, g.mean, None, g.n, g.low, g.high, " ".join(map(str, g.seeds)),
                                    None, None, None, None, g.paper, g.delta, None, None,
                                    f"{ref[0]}{_variant_text(ref[1])}", g.significant])


def _tex(s: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#"),
                 ("Δ", r"$\Delta$"), ("−", "--"), ("±", r"$\pm$")):
        s = s.replace(a, b)
    return s


def render_tex(t: SweepTable) -> str:
    what = "last-epoch" if t.use_final else "best"
    lines = [r"% generated by python -m gmmvit.table; needs \usepackage{booktabs}",
             r"\begin{table}[t]", r"\centering", r"\small",
             r"\begin{tabular}{ll" + "r" * (len(t.datasets) + 2) + "}", r"\toprule",
             " & ".join(["Model", "Mask"] + [_tex(d) for d in t.datasets] + ["Params", "MACs"]) + r" \\",
             r"\midrule"]
    previous = None
    for kind, model, mask, _, cells, ptxt, mtxt in table_rows(t):
        if previous is not None and model != previous:
            lines.append(r"\midrule")
        previous = model
        texts = []
        for d in t.datasets:
            c = cells[d]
            if kind == "acc":
                if c is None:
                    texts.append("--")
                elif c.n:
                    s = f"{c.mean:.2f}" + (rf"$\pm${c.std:.2f}" if c.std is not None else "")
                    s += rf"\,{{\scriptsize ({c.n})}}"
                    if c.paper is not None:
                        s += rf" {{\scriptsize[{c.paper:.2f}]}}"
                    texts.append(s)
                else:
                    state = ("running" if c.running else "failed" if c.failed
                             else "incomplete" if c.incomplete else "missing")
                    texts.append(r"\textit{" + state + "}")
            else:
                if c is None or c.n == 0:
                    texts.append("--")
                else:
                    s = f"{c.mean:+.2f}"
                    if c.low is not None:
                        s += rf"\,{{\scriptsize[{c.low:+.2f}, {c.high:+.2f}]}}"
                    if c.paper is not None:
                        s += rf" {{\scriptsize(paper {c.paper:+.2f})}}"
                    if c.significant is False:
                        s += r" {\scriptsize n.s.}"
                    texts.append(r"\textit{" + s + "}")
        label = _tex(model) if kind == "acc" else ""
        lines.append(" & ".join([label, _tex(mask)] + texts + [_tex(ptxt), _tex(mtxt)]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}",
              r"\caption{" + _tex(f"{t.name}: {what} test top-1 (%), mean ± std over seeds (n); "
                                  "[paper]; gain rows: paired difference to the reference row "
                                  f"({', '.join(t.reference_items)}) with 95% t-interval, n.s. = contains 0. "
                                  + ("Best epoch selected on the test set, as in the paper."
                                     if not t.use_final else "Last epoch.")) + "}",
              r"\end{table}"]
    return "\n".join(lines) + "\n"


def render_png(t: SweepTable, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = []       # (label, model, {dataset: Gain})
    for kind, model, mask, variant, cells, _, _ in table_rows(t):
        if kind == "gain":
            series.append((mask.split(" − ")[0].replace("Δ ", ""), model, cells))
    plot_gains = any(g is not None and g.n for _, _, cells in series for g in cells.values())
    if not plot_gains:    # no baseline to pair with: plot the accuracies instead
        series = []
        for kind, model, mask, variant, cells, _, _ in table_rows(t):
            if kind == "acc":
                series.append((mask, model, cells))
    has = lambda g: g is not None and g.n > 0  # noqa: E731
    datasets = [d for d in t.datasets if any(has(cells.get(d)) for _, _, cells in series)] or t.datasets[:1]
    ncols = len(datasets)
    fig, axes = plt.subplots(1, ncols, figsize=(max(4.5, 3.2 * ncols), 3.8), squeeze=False)
    labels = sorted({lab for lab, _, cells in series if any(has(g) for g in cells.values())})
    colors = {lab: plt.cm.tab10(i % 10) for i, lab in enumerate(labels)}
    width = min(0.35, 0.8 / max(1, len(labels)))
    for ax, d in zip(axes[0], datasets):
        for lab, model, cells in series:
            g = cells.get(d)
            if not has(g):
                continue
            x = t.models.index(model) + (labels.index(lab) - (len(labels) - 1) / 2) * width
            if plot_gains:
                err = None if g.low is None else [[g.mean - g.low], [g.high - g.mean]]
                ax.bar(x, g.mean, width, color=colors[lab], yerr=err, capsize=3)
                if g.paper is not None:
                    ax.plot(x, g.paper, "kx", ms=7)
            else:
                ax.bar(x, g.mean, width, color=colors[lab], yerr=g.std or None, capsize=3)
                if g.paper is not None:
                    ax.plot(x, g.paper, "kx", ms=7)
        ax.set_xlim(-0.6, len(t.models) - 0.4)
        ax.set_xticks(range(len(t.models)))
        ax.set_xticklabels(t.models)
        ax.set_title(d, fontsize=9)
        if plot_gains:
            ax.axhline(0, color="grey", lw=0.8)
    axes[0][0].set_ylabel("gain over the reference, top-1 points (95% CI)" if plot_gains else "top-1 (%) ± std")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colors[lab]) for lab in labels]
    handles.append(plt.Line2D([], [], color="k", marker="x", ls=""))
    axes[0][-1].legend(handles, labels + ["paper"], loc="best", fontsize=7)
    fig.suptitle(f"{t.name}: {'last-epoch' if t.use_final else 'best'} test top-1"
                 + (f"\ngain over {', '.join(t.reference_items)}, paired by seed" if plot_gains else ""), fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --- entry point -----------------------------------------------------------------------------------

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


def build(folder: Path, runs: list[Run], use_final: bool = False, write: bool = True) -> tuple[str, Optional[SweepTable]]:
    """The printed text of one sweep; with ``write``, its four files in ``folder``."""
    t = SweepTable(Path(folder), runs, use_final)
    if not any(r.state == "finished" for r in runs):
        counts = ", ".join(f"{v} {k}" for k, v in sorted(t.counts().items()))
        return f"{t.name} ({folder}): nothing finished yet ({counts}).\n", None
    text = render_markdown(t)
    if write:
        (t.folder / "table.md").write_text(text)
        write_csv(t, t.folder / "table.csv")
        (t.folder / "table.tex").write_text(render_tex(t))
        render_png(t, t.folder / "table.png")
    return text, t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gmmvit.table", description=__doc__.split("\n\n")[0])
    ap.add_argument("sweeps", nargs="*", default=["multirun"], help="sweep folders, or folders of sweeps")
    ap.add_argument("--final", action="store_true", help="last-epoch accuracy instead of the best epoch's")
    ap.add_argument("--stale-after", type=float, default=None, metavar="SECONDS",
                    help="a 'running' run silent this long is reported incomplete "
                         "(default: 3 of its longest epochs, at least 10 min)")
    args = ap.parse_args(argv)
    paths = [Path(p) for p in args.sweeps]
    absent = [p for p in paths if not p.exists()]
    for p in absent:
        print(f"gmmvit.table: {p} does not exist", file=sys.stderr)
    sweeps = collect_sweeps(paths, "gmmvit.table", args.stale_after)
    if not sweeps:
        return 1
    for folder, runs in sweeps.items():
        text, t = build(folder, runs, args.final)
        print(text, flush=True)
        if t is not None:
            print(f"(written: {', '.join(str(folder / o) for o in OUTPUTS)})\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
