"""A sweep evaluated again (``make eval SWEEP=...``) in one table: a row per evaluated run (model,
mask and whatever else the sweep varied, dataset, seed, the weights' file and epoch (counted from 1 of
the run's epochs, as the training lines count them; the JSON keeps the recorded index), top-1, top-5,
and the top-1 its training recorded at that epoch where the eval used the run's own test set),
written into the sweep folder as ``eval_<name>.md`` and ``eval_<name>.json`` (``<name>``: the runs'
``eval/<name>.json``), with the runs that were not evaluated listed beneath, each with why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from gmmvit.catalog import MASKS
from gmmvit.run.progress import epoch_count
from gmmvit.run.records import write_json
from gmmvit.sweeps.cells import assign_variants
from gmmvit.sweeps.folders import Run, variant_text

HEADER = ("run", "model", "mask", "dataset", "seed", "weights", "epoch", "top-1", "top-5", "recorded top-1")


def summary_paths(sweep_dir: Path, name: str) -> tuple[Path, Path]:
    return Path(sweep_dir) / f"eval_{name}.md", Path(sweep_dir) / f"eval_{name}.json"


def _mask_order(mask: str) -> int:
    return MASKS.index(mask) if mask in MASKS else len(MASKS)


def rows(sweep_dir: Path, evaluated: list[tuple[Run, dict]]) -> list[dict]:
    """One row per (run, its eval result), in the table's order: model, mask, variant, dataset, seed."""
    assign_variants([run for run, _ in evaluated])
    out = [{"run": str(run.path.relative_to(sweep_dir)), "model": run.model,
            "mask": f"{run.mask}{variant_text(run.variant)}", "dataset": result["dataset"], "seed": run.seed,
            "weights": result["weights"], "epoch": result["epoch"], "epochs": result["epochs"], "top1": result["top1"], "top5": result["top5"],
            "recorded_test_top1": result["recorded_test_top1"]} for run, result in evaluated]
    return sorted(out, key=lambda r: (r["model"], _mask_order(r["mask"].split(" ")[0]), r["mask"], r["dataset"],
                                      str(r["seed"]), r["run"]))


def _figure(x: Optional[float]) -> str:
    return "–" if x is None else f"{x:.2f}"


def render_markdown(title: str, table: list[dict], skipped: list[dict]) -> str:
    lines = [f"# {title}", "", "| " + " | ".join(HEADER) + " |", "|---|---|---|---|---:|---|---:|---:|---:|---:|"]
    lines += [f"| {r['run']} | {r['model']} | {r['mask']} | {r['dataset']} | {r['seed']} | {r['weights']} | "
              f"{epoch_count(r['epoch'], r['epochs'])} | {_figure(r['top1'])} | {_figure(r['top5'])} | {_figure(r['recorded_test_top1'])} |"
              for r in table]
    if skipped:
        lines += ["", f"Not evaluated ({len(skipped)}):", ""] + [f"- {s['run']}: {s['why']}" for s in skipped]
    return "\n".join(lines) + "\n"


def write_summary(sweep_dir: Path, name: str, checkpoint: str, overrides: list[str],
                  evaluated: list[tuple[Run, dict]], skipped: list[dict]) -> str:
    """Write ``eval_<name>.md`` and ``.json`` into ``sweep_dir``; returns the markdown."""
    sweep_dir = Path(sweep_dir)
    table = rows(sweep_dir, evaluated)
    skipped = [{"run": str(Path(s["run"]).relative_to(sweep_dir)), "why": s["why"]} for s in skipped]
    extra = f", {' '.join(overrides)}" if overrides else ""
    markdown = render_markdown(f"{sweep_dir}: {len(table)} runs evaluated again ({checkpoint} weights{extra})",
                               table, skipped)
    md, js = summary_paths(sweep_dir, name)
    write_json(js, {"sweep": str(sweep_dir), "checkpoint": checkpoint, "overrides": list(overrides),
                    "runs": table, "skipped": skipped})
    md.write_text(markdown)
    return markdown
