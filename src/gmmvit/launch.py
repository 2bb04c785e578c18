"""`make paper`: the paper's whole table (5 models x {none, elm, gmm} x 4 datasets x seeds) on one launcher.

    python -m gmmvit.launch [--launcher local|local_gpus|slurm|ray_gpus] [--seeds 0,1,2] [--dry] [override ...]

Without ``--dry`` it runs ``src/train.py -m experiment=paper <grid> hydra/launcher=<launcher> <overrides>``:
one Hydra multirun into ``multirun/paper/<overrides>/``. Relaunching it skips finished runs and
resumes interrupted ones (train() does both from the run folders). ``--dry`` lists the jobs, which
are finished, running (epochs done) or failed, reading ``metrics.json``, and estimates the GPU-hours
left from the paper recipe's length and a per-model training throughput: the median ``img_per_s``
already measured by this sweep's runs of that model, otherwise the H200 figures in ``GPU_IMG_PER_S``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "conf"

MODELS = ["vit", "swin", "cait", "pit", "t2t"]
MASKS = ["none", "elm", "gmm"]
DATASETS = ["cifar10", "cifar100", "svhn", "tinyimagenet"]

# images per training pass / per test pass (the authors train SVHN on its train split only)
TRAIN_SIZE = {"cifar10": 50_000, "cifar100": 50_000, "svhn": 73_257, "tinyimagenet": 100_000,
              "fashion_mnist": 60_000, "digits": 1_437}
TEST_SIZE = {"cifar10": 10_000, "cifar100": 10_000, "svhn": 26_032, "tinyimagenet": 10_000,
             "fashion_mnist": 10_000, "digits": 360}

# Training throughput on one GPU, img/s end to end through train() (bf16, compiled, GPU-resident
# data, the paper's augmentation, batch 128), until the sweep's own runs report theirs. MEASURED on an
# H200 (torch 2.11, compile=reduce-overhead, `python tests/gpu_check.py`, README "GPU"), the mean of
# mask none and gmm: ViT 21,505 / 20,037, Swin 16,997 / 14,635, CaiT 8,088 / 6,599. PiT: none
# measured (19,354), gmm scaled by the none:gmm ratio measured with step_graph (25,405 : 13,468).
# T2T is ASSUMED: ViT's figure scaled by the authors' 2-core CPU speed ratio (50 / 110).
# The 64px Tiny-ImageNet configurations keep the token count (the patch size doubles): same figure.
GPU_IMG_PER_S = {"vit": 20_800, "swin": 15_800, "cait": 7_300, "pit": 14_800, "t2t": 9_400}
GPU_RATE_SOURCE = {"vit": "measured, H200", "swin": "measured, H200", "cait": "measured, H200",
                   "pit": "measured none, H200", "t2t": "assumed"}
# Several runs sharing one GPU (runs_per_gpu): their summed img/s over one run's, MEASURED for ViT-GMM
# on the H200 above (2 runs: 41,209; 4 runs: 74,259 against 20,037 alone); applied to every model.
PACKING_GAIN = {1: 1.0, 2: 2.06, 4: 3.71}
DEFAULT_IMG_PER_S = 5_000
EVAL_COST = 1 / 3  # a test image costs about a third of a training image (forward only)


def csv(text: str) -> list[str]:
    return [t.strip() for t in str(text).split(",") if t.strip()]


def exclude_keys() -> list[str]:
    cfg = OmegaConf.load(CONF / "config.yaml")
    return list(cfg.hydra.job.config.override_dirname.exclude_keys)


def run_name(overrides: list[str]) -> str:
    """The folder Hydra gives a job with these task overrides (hydra.job.override_dirname)."""
    from hydra._internal.config_loader_impl import get_overrides_dirname
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    return get_overrides_dirname(parsed, exclude_keys(), item_sep=",", kv_sep="=") or "defaults"


def recipe_length() -> tuple[float, float]:
    recipe = OmegaConf.load(CONF / "recipe" / "paper.yaml")
    return float(recipe.epochs), float(recipe.passes_per_epoch)


def read_metrics(run_dir: Path) -> dict | None:
    try:
        return json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return None


def is_task_override(text: str) -> bool:
    return not text.startswith(("hydra.", "hydra/", "+hydra", "~hydra", "-"))


def jobs(args) -> list[dict]:
    extra = [o for o in args.overrides if is_task_override(o)]
    out = []
    for model in csv(args.models):
        for mask in csv(args.masks):
            for dataset in csv(args.datasets):
                for seed in csv(args.seeds):
                    overrides = [f"model={model}", f"mask={mask}", f"dataset={dataset}", f"seed={seed}", *extra]
                    out.append({"model": model, "mask": mask, "dataset": dataset, "seed": seed,
                                "dir": Path(args.multirun) / args.sweep / run_name(overrides)})
    return out


def estimate(job: dict, m: dict | None, measured: dict, epochs: float, passes: float) -> float:
    """GPU-hours this job still needs."""
    total = float((m or {}).get("epochs") or epochs)
    done = len((m or {}).get("history", [])) if (m or {}).get("status") != "failed" else 0
    left = max(total - done, 0.0)
    rate = measured.get(job["model"]) or GPU_IMG_PER_S.get(job["model"], DEFAULT_IMG_PER_S)
    train_images = TRAIN_SIZE.get(job["dataset"], 50_000) * job.get("train_fraction", 1.0)
    images = train_images * passes + EVAL_COST * TEST_SIZE.get(job["dataset"], 10_000)
    return left * images / rate / 3600


def measured_rates(listed: list[dict], records: dict) -> dict[str, float]:
    """{model: median img/s} over the epochs the jobs' runs (``records``: metrics.json by run folder)
    have already recorded; models with none are left out."""
    measured = {}
    for model in {j["model"] for j in listed}:
        rates = [r["img_per_s"] for j in listed if j["model"] == model
                 for r in (records[str(j["dir"])] or {}).get("history", []) if r.get("img_per_s")]
        if rates:
            measured[model] = statistics.median(rates)
    return measured


def dry_run(args) -> int:
    from gmmvit.progress import run_detail
    from gmmvit.table import is_run_dir, read_run

    epochs, passes = recipe_length()
    listed = jobs(args)
    records = {str(j["dir"]): read_metrics(j["dir"]) for j in listed}
    measured = measured_rates(listed, records)
    counts = {"finished": 0, "running": 0, "incomplete": 0, "failed": 0, "todo": 0}
    hours = 0.0
    print(f"{len(listed)} jobs in {Path(args.multirun) / args.sweep} (recipe: {epochs:g} epochs x "
          f"{passes:g} passes; launcher: {args.launcher})")
    for job in listed:
        m = records[str(job["dir"])]
        run = read_run(job["dir"]) if is_run_dir(job["dir"]) else None
        state = run.state if run is not None and run.state in counts else "todo"
        counts[state] += 1
        left = estimate(job, m, measured, epochs, passes) if state != "finished" else 0.0
        hours += left
        print(f"  {job['model']:>5} {job['mask']:>4} {job['dataset']:>12} seed {job['seed']:>2}  "
              f"{run_detail(run, m or {}):<44} {left:7.2f} GPU-h  {job['dir'].name}")
    print(", ".join(f"{v} {k}" for k, v in counts.items()) + f"; about {hours:.1f} GPU-hours left"
          + "".join(f"; {hours / gain:.1f} with runs_per_gpu={k}" for k, gain in PACKING_GAIN.items() if k > 1))
    rates = ", ".join(f"{m} {measured[m]:.0f} (measured)" if m in measured else
                      f"{m} {GPU_IMG_PER_S.get(m, DEFAULT_IMG_PER_S)} ({GPU_RATE_SOURCE.get(m, 'assumed')})" for m in csv(args.models))
    print(f"training img/s per GPU: {rates}; failed runs count as starting over")
    return 0


def command(args) -> list[str]:
    default_root = Path(args.multirun).resolve() == (REPO / "multirun").resolve()
    sweep_dir = [] if default_root else [f"hydra.sweep.dir={Path(args.multirun) / args.sweep}"]
    grid = [f"model={args.models}", f"mask={args.masks}", f"dataset={args.datasets}", f"seed={args.seeds}"]
    return [sys.executable, str(REPO / "src" / "train.py"), "-m", "experiment=paper", f"sweep={args.sweep}",
            *grid, f"hydra/launcher={args.launcher}", *sweep_dir, *args.overrides]


def check_groups(args) -> None:
    for group, names in (("model", args.models), ("mask", args.masks), ("dataset", args.datasets),
                         ("hydra/launcher", args.launcher)):
        for name in csv(names):
            if group == "hydra/launcher" and name in ("basic", "submitit_local", "submitit_slurm", "ray", "joblib"):
                continue
            if not (CONF / group / f"{name}.yaml").exists():
                sys.exit(f"gmmvit: error: no config conf/{group}/{name}.yaml; "
                         f"choose from {sorted(p.stem for p in (CONF / group).glob('*.yaml'))}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m gmmvit.launch", description=__doc__.split("\n\n")[0])
    p.add_argument("--launcher", default="local", help="conf/hydra/launcher preset: local, local_gpus, slurm, ray_gpus")
    p.add_argument("--seeds", default="0", help="comma-separated seeds (SEEDS=0,1,2)")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--masks", default=",".join(MASKS))
    p.add_argument("--datasets", default=",".join(DATASETS))
    p.add_argument("--sweep", default="paper")
    p.add_argument("--multirun", default=str(REPO / "multirun"), help="where sweeps live")
    p.add_argument("--dry", action="store_true", help="list the jobs, what is finished, GPU-hours left")
    p.add_argument("overrides", nargs="*", help="more Hydra overrides, e.g. hydra.launcher.partition=gpu")
    args = p.parse_args(argv)
    if args.dry:
        return dry_run(args)
    check_groups(args)
    cmd = command(args)
    print("+ " + " ".join(cmd), flush=True)
    return subprocess.call(cmd, cwd=REPO)


if __name__ == "__main__":
    sys.exit(main())
