"""Pictures of the learned attention masks (GMM, ELM), written into the run folder and to W&B.

``MaskFigures`` takes snapshots of every :class:`gmmvit.nn.masks.AttentionMask` in a model:
at the start, ``logger.mask_figures`` times evenly spaced during training, and at the end.
A snapshot is one PNG, ``<run_dir>/masks/epoch_XXX.png`` (XXX = epochs completed; 000 = the
initial mask), a grid of layers (rows) x heads (columns) showing, for the central query token,
its mask row over the layer's token grid; GMM runs also append their sigma / alpha to
``<run_dir>/masks/gmm_params.csv``. With W&B on, the same figure is logged as an image and
sigma / alpha as a ``wandb.Table`` and histograms. Runs without a learned mask write nothing.

Figures are cheap (one ``imshow`` per figure) and never stop a run: any error becomes one
warning line and the figures are turned off for the rest of the run.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from gmmvit.nn.masks import AttentionMask, GaussianMixtureMask

MASKS_DIR = "masks"
PARAMS_CSV = "gmm_params.csv"
SNAPSHOT_PREFIX = "epoch_"
SNAPSHOTS = f"{SNAPSHOT_PREFIX}*.png"


def snapshot_name(epochs_done: int) -> str:
    """The snapshot's file in ``MASKS_DIR``: ``epoch_XXX.png``, XXX epochs completed."""
    return f"{SNAPSHOT_PREFIX}{epochs_done:03d}.png"


def mask_modules(model: torch.nn.Module) -> list[tuple[str, AttentionMask]]:
    """The learned masks of a model in module order, as (name, module); plain attention excluded."""
    return [(name, m) for name, m in model.named_modules()
            if isinstance(m, AttentionMask) and getattr(m, "kind", "none") != "none"]


def snapshot_epochs(epochs: int, times: int) -> list[int]:
    """Epoch counts (epochs completed) of the in-training snapshots: ``times`` evenly spaced in (0, epochs)."""
    if epochs <= 1 or times <= 0:
        return []
    marks = {int(round(epochs * (i + 1) / (times + 1))) for i in range(times)}
    return sorted(e for e in marks if 0 < e < epochs)


def _short(name: str) -> str:
    for suffix in (".attn.mask", ".mask"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


@torch.no_grad()
def central_query_maps(masks: list[tuple[str, AttentionMask]]) -> list[tuple[str, np.ndarray]]:
    """Per mask layer: ``[H or 1, g, g]``, the mask row of the grid's central token over the grid."""
    out = []
    for name, m in masks:
        g = m.grid_size
        values = m.values().detach().float().cpu()             # [H or 1, N, N]
        centre = (g // 2) * g + g // 2
        out.append((_short(name), values[:, centre, :].reshape(values.shape[0], g, g).numpy()))
    return out


def _tile(maps: list[tuple[str, np.ndarray]]) -> tuple[np.ndarray, int, int]:
    """All maps in one array: rows = layers, columns = heads, each tile scaled to [-1, 1]."""
    cell = max(a.shape[-1] for _, a in maps)
    cols = max(a.shape[0] for _, a in maps)
    pad = 1
    side = cell + pad
    canvas = np.full((len(maps) * side - pad, cols * side - pad), np.nan)
    for r, (_, a) in enumerate(maps):
        for h in range(a.shape[0]):
            tile = a[h]
            scale = np.abs(tile).max()
            tile = tile / scale if scale > 0 else tile
            g = tile.shape[-1]
            if cell % g == 0:
                tile = np.kron(tile, np.ones((cell // g, cell // g)))
            else:                                                # centre a smaller grid in the cell
                off = (cell - g) // 2
                tile = np.pad(tile, ((off, cell - g - off),) * 2, constant_values=np.nan)
            canvas[r * side:r * side + cell, h * side:h * side + cell] = tile
    return canvas, cell, side


def draw_mask_grid(maps: list[tuple[str, np.ndarray]], path: Path, title: str) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    canvas, cell, side = _tile(maps)
    rows, cols = len(maps), max(a.shape[0] for _, a in maps)
    width = min(max(5.0, 2.5 + 0.6 * cols), 16.0)
    height = min(1.6 + 0.6 * rows, 30.0)
    fig, ax = plt.subplots(figsize=(width, height))
    cmap = matplotlib.colormaps["RdBu_r"].with_extremes(bad="white")
    ax.imshow(canvas, cmap=cmap, vmin=-1, vmax=1, interpolation="nearest")
    ax.set_xticks([h * side + cell / 2 - 0.5 for h in range(cols)])
    ax.set_xticklabels([f"h{h}" for h in range(cols)] if cols > 1 else ["shared"], fontsize=7)
    ax.set_yticks([r * side + cell / 2 - 0.5 for r in range(rows)])
    ax.set_yticklabels([f"{name}  |M|max {np.abs(a).max():.2g}" for name, a in maps], fontsize=7)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def gmm_parameter_rows(masks: list[tuple[str, AttentionMask]], epochs_done: int) -> list[list]:
    """[epochs_done, layer, head, kernel, sigma, alpha] for every GMM kernel."""
    rows = []
    for name, m in masks:
        if not isinstance(m, GaussianMixtureMask):
            continue
        sigma = m.sigma.detach().float().cpu().reshape(m.num_kernels, m.num_heads)
        alpha = m.alpha.detach().float().cpu().reshape(m.num_kernels, m.num_heads)
        for k in range(m.num_kernels):
            for h in range(m.num_heads):
                rows.append([epochs_done, _short(name), h, k, float(sigma[k, h]), float(alpha[k, h])])
    return rows


PARAM_COLUMNS = ["epochs_done", "layer", "head", "kernel", "sigma", "alpha"]


def recorded_snapshots(run_dir: Path, epochs_done: int) -> dict[int, tuple[Path, list[list]]]:
    """The snapshots a run's folder holds up to ``epochs_done`` epochs: ``{epochs: (png, rows)}``, rows
    as ``gmm_parameter_rows`` gave them (none for ELM), read back from ``masks/``. Unreadable rows are
    left out: a figure is never worth a failed run."""
    folder = Path(run_dir) / MASKS_DIR
    snapshots: dict[int, tuple[Path, list[list]]] = {}
    for png in sorted(folder.glob(SNAPSHOTS)):
        epochs = png.stem.removeprefix(SNAPSHOT_PREFIX)
        if epochs.isdigit() and int(epochs) <= epochs_done:
            snapshots[int(epochs)] = (png, [])
    try:
        with open(folder / PARAMS_CSV, newline="") as f:
            for row in list(csv.reader(f))[1:]:
                if len(row) == len(PARAM_COLUMNS) and row[0].isdigit() and int(row[0]) in snapshots:
                    snapshots[int(row[0])][1].append([int(row[0]), row[1], int(row[2]), int(row[3]),
                                                      float(row[4]), float(row[5])])
    except (OSError, ValueError):
        pass
    return snapshots


class MaskFigures:
    """Mask snapshots of one run: ``start()``, ``after_epoch(n)``, ``end(n)`` (n = epochs completed)."""

    def __init__(self, cfg, model: torch.nn.Module, run_dir: Path, tracker=None):
        try:
            self.masks = mask_modules(model)
        except Exception:  # never stop a run for a figure
            self.masks = []
        self.dir = Path(run_dir) / MASKS_DIR
        self.tracker = tracker
        self.epochs = int(cfg.recipe.epochs)
        times = cfg.logger.get("mask_figures", 4) if "logger" in cfg else 4
        self.during = set(snapshot_epochs(self.epochs, int(times or 0)))
        self.label = f"{cfg.model.name} + {cfg.mask.name} on {cfg.dataset.name}, seed {cfg.seed}"
        self.done: set[int] = set()
        self.enabled = bool(self.masks)

    def start(self, epochs_done: int = 0) -> None:
        self._forget_after(epochs_done)
        if epochs_done and (self.dir / snapshot_name(epochs_done)).exists():
            self.done.add(epochs_done)       # a resumed run: this state was drawn before the restart
            return
        self.snapshot(epochs_done)

    def _forget_after(self, epochs_done: int) -> None:
        """A run stopped after a snapshot but before that epoch's checkpoint trains the epoch again:
        its sigma/alpha rows are dropped, or the CSV would hold that epoch twice (its PNG is redrawn)."""
        path = self.dir / PARAMS_CSV
        if not self.enabled or not path.exists():
            return
        try:
            with open(path, newline="") as f:
                rows = list(csv.reader(f))
            kept = rows[:1] + [r for r in rows[1:] if r and int(r[0]) <= epochs_done]
            if len(kept) < len(rows):
                with open(path, "w", newline="") as f:
                    csv.writer(f).writerows(kept)
        except (OSError, ValueError) as exc:  # a figure never stops training
            print(f"[gmmvit] {path} not trimmed to {epochs_done} epochs ({type(exc).__name__}: {exc})", flush=True)

    def after_epoch(self, epochs_done: int) -> None:
        if epochs_done in self.during:
            self.snapshot(epochs_done)

    def end(self, epochs_done: Optional[int] = None) -> None:
        self.snapshot(self.epochs if epochs_done is None else epochs_done)

    def snapshot(self, epochs_done: int) -> Optional[Path]:
        if not self.enabled or epochs_done in self.done:
            return None
        try:
            path = draw_mask_grid(central_query_maps(self.masks), self.dir / snapshot_name(epochs_done),
                                  f"after {epochs_done} epoch(s): {self.label}\n"
                                  "mask row of the central query token over the token grid\n"
                                  "(each tile scaled by its max |M|; red > 0, blue < 0)")
            rows = gmm_parameter_rows(self.masks, epochs_done)
            if rows:
                csv_path = self.dir / PARAMS_CSV
                new = not csv_path.exists()
                with open(csv_path, "a", newline="") as f:
                    w = csv.writer(f)
                    if new:
                        w.writerow(PARAM_COLUMNS)
                    w.writerows(rows)
            if self.tracker is not None:
                self.tracker.log_mask_snapshot(path, PARAM_COLUMNS, rows, epochs_done)
            self.done.add(epochs_done)
            return path
        except Exception as exc:  # a figure never stops training
            print(f"[gmmvit] mask figure failed ({type(exc).__name__}: {exc}); mask figures off for this run",
                  flush=True)
            self.enabled = False
            return None
