"""A sweep's attention locality in one figure: per model (and dataset), the mean attention
distance of every layer for each mask (none vs ELM vs GMM; mean over the sweep's seeds, the range
over seeds shaded, each head a dot, uniform attention dotted), and beside it, for GMM, the learned
sigma of every kernel and head per layer, coloured by its alpha.

It reads the runs' ``analysis/attention_locality.json`` (``gmmvit.run.locality``) and writes
``attention_locality.png`` and ``attention_locality.csv`` (one row per run, layer and head) into the
sweep folder; runs with a W&B run get the figure (``locality/figure``) and their per-layer means
(``locality/<layer>``) logged to it.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import numpy as np

from gmmvit.catalog import MASKS
from gmmvit.run.locality import locality_path
from gmmvit.run.records import read_json
from gmmvit.run.tracking import reopened
from gmmvit.sweeps.cells import assign_variants
from gmmvit.sweeps.folders import read_any, variant_text

FIGURE = "attention_locality.png"
TABLE = "attention_locality.csv"
MASK_COLOURS = {"none": "tab:grey", "elm": "tab:blue", "gmm": "tab:red"}
CSV_COLUMNS = ["model", "mask", "variant", "dataset", "seed", "run", "layer", "grid", "head", "distance", "uniform"]


def _mask_order(mask: str) -> int:
    return list(MASKS).index(mask) if mask in MASKS else len(MASKS)


def write_csv(results: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(CSV_COLUMNS)
        for r in results:
            for layer in r["layers"]:
                for head, distance in enumerate(layer["heads"]):
                    out.writerow([r["model"], r["mask"], r["variant"], r["dataset"], r["seed"], Path(r["run"]).name,
                                  layer["layer"], layer["grid"], head, f"{distance:.4f}", f"{layer['uniform']:.4f}"])


def draw(results: list[dict], path: Path, title: str) -> Path:
    """The figure: one row per model, dataset and depth, distances on the left, GMM sigma on the
    right; a line per mask and variant (the settings a sweep varied besides the seed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = defaultdict(lambda: defaultdict(list))
    for r in results:
        panels[(r["model"], r["dataset"], len(r["layers"]))][(r["mask"], r["variant"])].append(r)
    fig, axes = plt.subplots(len(panels), 2, figsize=(10, 3.2 * len(panels)), squeeze=False,
                             gridspec_kw={"width_ratios": [3, 2]})
    for (left, right), ((model, dataset, _), by_line) in zip(axes, sorted(panels.items())):
        reference = next(iter(by_line.values()))[0]["layers"]
        x = np.arange(len(reference))
        left.plot(x, [layer["uniform"] for layer in reference], ":", color="black", label="uniform attention")
        masks_drawn = defaultdict(int)
        for mask, variant in sorted(by_line, key=lambda line: (_mask_order(line[0]), line[1])):
            runs = by_line[(mask, variant)]
            colour = MASK_COLOURS.get(mask) if not masks_drawn[mask] else None
            masks_drawn[mask] += 1
            means = np.array([[layer["mean"] for layer in r["layers"]] for r in runs])
            line, = left.plot(x, means.mean(0), "-o", color=colour, ms=3, label=f"{mask}{variant} (n={len(runs)})")
            if len(runs) > 1:
                left.fill_between(x, means.min(0), means.max(0), color=line.get_color(), alpha=0.15)
            for r in runs:
                for i, layer in enumerate(r["layers"]):
                    left.scatter(np.full(len(layer["heads"]), i), layer["heads"], s=10, color=line.get_color(),
                                 alpha=0.5, linewidths=0)
        left.set_xticks(x, [f"{i}\n{layer['grid']}²" for i, layer in enumerate(reference)], fontsize=7)
        left.set_xlabel("layer (its grid)")
        left.set_ylabel("mean attention distance (tokens)")
        left.set_ylim(bottom=0)
        left.set_title(f"{model} on {dataset} ({len(reference)} attention layers)", fontsize=9)
        left.legend(fontsize=7)
        _draw_sigma(right, [r for (mask, _), runs in by_line.items() if mask == "gmm" for r in runs], fig)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _draw_sigma(ax, gmm_runs: list[dict], fig) -> None:
    if not gmm_runs:
        ax.axis("off")
        ax.text(0.5, 0.5, "no GMM run", ha="center", va="center", fontsize=8)
        return
    xs, sigmas, alphas = [], [], []
    for r in gmm_runs:
        for i, layer in enumerate(r["layers"]):
            if layer.get("gmm"):
                s, a = np.abs(np.array(layer["gmm"]["sigma"])).ravel(), np.array(layer["gmm"]["alpha"]).ravel()
                xs.append(i + np.linspace(-0.25, 0.25, s.size))
                sigmas.append(s)
                alphas.append(a)
    xs, sigmas, alphas = map(np.concatenate, (xs, sigmas, alphas))
    bound = float(np.abs(alphas).max()) or 1.0
    dots = ax.scatter(xs, sigmas, c=alphas, cmap="coolwarm", vmin=-bound, vmax=bound, s=10)
    ax.set_yscale("log")
    ax.set_xlabel("layer (kernels x heads)")
    ax.set_ylabel("GMM |sigma| (tokens)")
    ax.set_title(f"learned GMM (n={len(gmm_runs)} run{'s' if len(gmm_runs) > 1 else ''})", fontsize=9)
    fig.colorbar(dots, ax=ax, label="alpha")


def sweep_figure(sweep_dir: Path, run_dirs: list[Path]) -> tuple[Path, list[dict]]:
    """Draw the figure and the CSV of the measured runs in ``run_dirs`` into ``sweep_dir``."""
    runs = [read_any(d) for d in run_dirs]
    assign_variants(runs)
    results = []
    for run in runs:
        result = read_json(locality_path(run.path))
        if result:
            results.append({**result, "variant": variant_text(run.variant)})
    results.sort(key=lambda r: (r["model"], _mask_order(r["mask"]), r["variant"], str(r["seed"])))
    write_csv(results, Path(sweep_dir) / TABLE)
    figure = draw(results, Path(sweep_dir) / FIGURE,
                  f"{Path(sweep_dir).name}: mean attention distance per layer over "
                  f"{results[0]['images']} test images ({results[0]['checkpoint']} weights)")
    return figure, results


def log_to_wandb(cfg, run_dir: Path, result: dict, figure: Path) -> None:
    """Log a run's per-layer means and the sweep's figure to the run's W&B run, if it has one."""
    with reopened(cfg, run_dir, locality_path(run_dir)) as tracker:
        tracker.log_summary(**{f"locality/{layer['layer']}": layer["mean"] for layer in result["layers"]})
        tracker.log_images({"locality/figure": str(figure)})
