"""`make paper`: the paper's whole table (5 models x {none, elm, gmm} x 4 datasets x seeds) on one launcher.

    python -m gmmvit.config.paper_grid [--launcher local|local_gpus|slurm|ray_gpus] [--seeds 0,1,2] [--dry] [override ...]

Without ``--dry`` it runs ``src/train.py -m experiment=paper <grid> hydra/launcher=<launcher> <overrides>``:
one Hydra multirun into ``multirun/paper/<overrides>/``. Relaunching it skips finished runs and
resumes interrupted ones (train() does both from the run folders). ``--dry`` lists the jobs, which
are finished, running (epochs done) or failed, reading ``metrics.json``, and estimates the GPU-hours
left (``gmmvit.sweeps.cost``). Both plan the jobs Hydra runs: an override of one of the grid's keys
narrows it as Hydra does (``model=pit``: PiT alone, as ``--models pit``), and every job is composed
and checked as training checks it (``gmmvit.config.planning``) before anything is listed or
launched: a bad override or flag is one line, exit 2.
"""

from __future__ import annotations

from collections import Counter
import subprocess
import sys
from pathlib import Path

from gmmvit.catalog import MASKS, MODELS, MULTIRUN, PAPER_DATASETS, REPO, TRAIN_SCRIPT
from gmmvit.config.planning import checked_configs, launcher_flag, names_flag, planned_env, seeds_flag
from gmmvit.config.refusals import group_options
from gmmvit.config.reporting import guarded
from gmmvit.errors import CommandLine, one_line_errors
from gmmvit.run.fused import stacking_key
from gmmvit.sweeps.cost import (DEFAULT_IMG_PER_S, GPU_IMG_PER_S, GPU_RATE_SOURCE, NO_PACKING, epochs_left, estimate,
                                fused_hours, measured_rates, recipe_length)
from gmmvit.sweeps.expand import fused_groups, is_task_override, override_key, override_value, preset_jobs, run_name
from gmmvit.sweeps.folders import STATES, is_run_dir, read_any, read_metrics
from gmmvit.sweeps.status import run_detail


def task_overrides(args) -> list[str]:
    """The run's overrides of the multirun ``command`` launches, after ``experiment=paper``."""
    return [f"sweep={args.sweep}", f"model={args.models}", f"mask={args.masks}", f"dataset={args.datasets}",
            f"seed={args.seeds}", *(o for o in args.overrides if is_task_override(o))]


def sweep_of(args) -> str:
    """The sweep folder the jobs train in: ``--sweep``, or a ``sweep=`` override after it."""
    return override_value(task_overrides(args), "sweep")


def jobs(args) -> list[dict]:
    """Each job of the multirun, in Hydra's order: its grid values, overrides and run folder."""
    sweep = sweep_of(args)
    out = []
    for job in preset_jobs("paper", task_overrides(args)):
        out.append({key: override_value(job, key) for key in ("model", "mask", "dataset", "seed")}
                   | {"overrides": job, "dir": Path(args.multirun) / sweep / run_name(["experiment=paper", *job], sweep)})
    return out


def planned(args) -> tuple[list[dict], list]:
    """The jobs and their configs, every one checked (``ConfigError`` at the first refused)."""
    hydra = [f"hydra/launcher={args.launcher}", *(o for o in args.overrides if not is_task_override(o))]
    listed = jobs(args)
    return listed, checked_configs([["experiment=paper", *job["overrides"]] for job in listed], hydra)


def dry_run(args, listed: list[dict], configs: list) -> int:
    epochs, passes = recipe_length()
    records = {str(j["dir"]): read_metrics(j["dir"]) for j in listed}
    measured = measured_rates(listed, records)
    counts = dict.fromkeys((*STATES, "todo"), 0)
    hours = 0.0
    print(f"{len(listed)} jobs in {Path(args.multirun) / sweep_of(args)} (recipe: {epochs:g} epochs x "
          f"{passes:g} passes; launcher: {args.launcher})")
    for job in listed:
        m = records[str(job["dir"])]
        run = read_any(job["dir"]) if is_run_dir(job["dir"]) else None
        state = run.state if run is not None and run.state in counts else "todo"
        counts[state] += 1
        left = estimate(job, m, measured, epochs, passes) if state != "finished" else 0.0
        hours += left
        print(f"  {job['model']:>5} {job['mask']:>4} {job['dataset']:>12} seed {job['seed']:>2}  "
              f"{run_detail(run, m or {}):<44} {left:7.2f} GPU-h  {job['dir'].name}")
    shown = {k: v for k, v in counts.items() if v or k != "unreadable"}  # unreadable folders only when there are some
    print(", ".join(f"{v} {k}" for k, v in shown.items()) + f"; about {hours:.1f} GPU-hours left ({NO_PACKING})")
    rates = ", ".join(f"{m} {measured[m]:.0f} (measured)" if m in measured else
                      f"{m} {GPU_IMG_PER_S.get(m, DEFAULT_IMG_PER_S)} ({GPU_RATE_SOURCE.get(m, 'assumed')})" for m in dict.fromkeys(j["model"] for j in listed))
    print(f"training img/s per GPU: {rates}; failed runs count as starting over")
    fused_plan(args, listed, configs, records, epochs, passes)
    return 0


def fused_size(overrides: list[str]) -> int:
    sizes = [o.split("=", 1)[1] for o in overrides if override_key(o) == "fused"]
    return int(sizes[-1]) if sizes and sizes[-1].isdigit() else 1


def fused_plan(args, listed: list[dict], configs: list, records: dict, epochs: float, passes: float) -> None:
    """With ``fused=G`` among the overrides: the groups the sweep's jobs form (as its jobs form them:
    alike by their overrides, then by their models' stacking key), and their GPU-hours from
    measured fused rates only (none measured: it says so and prints no figure)."""
    size = fused_size(args.overrides)
    if size <= 1:
        return
    overrides = [["experiment=paper", *job["overrides"]] for job in listed]
    keys: dict = {}  # a model's stacking key depends on its config, not on its seed

    def structure(j: int):
        unseeded = tuple(o for o in overrides[j] if override_key(o) != "seed")
        if unseeded not in keys:
            keys[unseeded] = stacking_key(configs[j])
        return keys[unseeded]

    def to_train(j: int) -> bool:  # the jobs cut their groups over the runs still to train
        return (records[str(listed[j]["dir"])] or {}).get("status") != "finished"

    groups = [[listed[j] for j in g] for g in fused_groups(overrides, size, structure, to_train)]
    if not groups:
        print(f"fused={size}: all {len(listed)} jobs finished, no group left to train")
        return
    lefts = [[epochs_left(records[str(job["dir"])], epochs) for job in g] for g in groups]
    shapes = ", ".join(f"{n} of {k}" for k, n in sorted(Counter(len(g) for g in groups).items(), reverse=True))
    count = sum(len(g) for g in groups)
    left = f" to train ({len(listed) - count} finished)" if count < len(listed) else ""
    print(f"fused={size}: {count} jobs{left} in {len(groups)} groups ({shapes}), one process on one GPU each")
    hours, missing = fused_hours(groups, lefts, epochs, passes)
    if hours is None:
        print("fused GPU-hours: not estimated: no fused rate measured on a GPU for "
              + ", ".join(f"{m} x{g}" for m, g in missing)
              + " (the GPU check's fused phase measures them: python -m gmmvit.bench.gpu_check)")
    else:
        print(f"fused GPU-hours: about {hours:.1f} left, from measured fused rates")


def command(args) -> list[str]:
    default_root = Path(args.multirun).resolve() == MULTIRUN.resolve()
    sweep_dir = [] if default_root else [f"hydra.sweep.dir={Path(args.multirun) / sweep_of(args)}"]
    grid = [f"model={args.models}", f"mask={args.masks}", f"dataset={args.datasets}", f"seed={args.seeds}"]
    return [sys.executable, str(TRAIN_SCRIPT), "-m", "experiment=paper", f"sweep={args.sweep}",
            *grid, f"hydra/launcher={args.launcher}", *sweep_dir, *args.overrides]


def run(args) -> int:
    launcher_flag(args.launcher)
    seeds_flag(args.seeds)
    for flag, names, group in (("--models", args.models, "model"), ("--masks", args.masks, "mask"),
                               ("--datasets", args.datasets, "dataset")):
        names_flag(flag, names, group_options(group))
    listed, configs = planned(args)
    if args.dry:
        return dry_run(args, listed, configs)
    cmd = command(args)
    print("+ " + " ".join(cmd), flush=True)
    return subprocess.call(cmd, cwd=REPO, env=planned_env(cmd[2:]))


@one_line_errors
def main(argv=None) -> int:
    p = CommandLine(prog="python -m gmmvit.config.paper_grid", description=__doc__.split("\n\n")[0])
    p.add_argument("--launcher", default="local", help="conf/hydra/launcher preset: local, local_gpus, slurm, ray_gpus")
    p.add_argument("--seeds", default="0", help="comma-separated seeds (SEEDS=0,1,2)")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--masks", default=",".join(MASKS))
    p.add_argument("--datasets", default=",".join(PAPER_DATASETS))
    p.add_argument("--sweep", default="paper")
    p.add_argument("--multirun", default=str(MULTIRUN), help="where sweeps live")
    p.add_argument("--dry", action="store_true", help="list the jobs, what is finished, GPU-hours left")
    p.add_argument("overrides", nargs="*", help="more Hydra overrides, e.g. hydra.launcher.partition=gpu")
    return guarded(run, p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
