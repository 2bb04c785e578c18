"""`make ablations`: the questions the paper leaves open, one Hydra multirun each.

    python -m gmmvit.config.ablations [--only pooling,kernels] [--launcher local|local_gpus|slurm|ray_gpus] [--dry]
                               [override ...]

The presets are ``conf/experiment/ablation/*.yaml``: each sweeps the keys its question needs x masks
x seeds (``hydra.sweeper.params``) into ``multirun/ablation/<name>/``, on whatever model and dataset
the overrides name (default: the config's, ViT on CIFAR-10); an override of a swept key replaces the
preset's values (``seed=0,1,2,3,4``). Every job of every selected preset is composed and checked as
training checks it (``gmmvit.config.planning``) before anything is listed or launched: a bad override
is one line, exit 2, and no preset has started. Without ``--dry`` each selected preset then runs as
``src/train.py -m experiment=ablation/<name> hydra/launcher=<launcher> <overrides>``; relaunching
skips finished runs and resumes the others. ``--dry`` lists every preset's jobs, how many are
finished, and the GPU-hours left, estimated as ``make paper DRY=1`` does (``gmmvit.sweeps.cost``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from omegaconf import OmegaConf

from gmmvit.catalog import CONF, MULTIRUN, REPO, TRAIN_SCRIPT
from gmmvit.config.planning import checked_configs, launcher_flag, names_flag, planned_env
from gmmvit.config.reporting import guarded
from gmmvit.errors import CommandLine, ConfigError, one_line_errors
from gmmvit.sweeps.cost import NO_PACKING, estimate, measured_rates, recipe_length
from gmmvit.sweeps.expand import is_task_override, override_value, preset_jobs, run_name
from gmmvit.sweeps.folders import read_metrics

PRESET_DIR = CONF / "experiment" / "ablation"


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def preset(name: str):
    path = PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"no ablation preset {name!r} (conf/experiment/ablation/{name}.yaml); "
                          f"choose from {', '.join(preset_names())}")
    return OmegaConf.load(path)


def grid(name: str, overrides: list[str]) -> list[list[str]]:
    """The override list of every job of preset ``name``, as Hydra's basic sweeper expands it: the
    preset's ``hydra.sweeper.params``, with the task overrides given here replacing the same keys."""
    preset(name)
    return preset_jobs(f"ablation/{name}", [o for o in overrides if is_task_override(o)])


def jobs(name: str, overrides: list[str], multirun: Path) -> list[dict]:
    """Each job of the preset: its overrides, model, dataset, training fraction and run folder."""
    defaults = OmegaConf.load(CONF / "config.yaml")
    choices = {k: v for d in OmegaConf.to_container(defaults.defaults) if isinstance(d, dict) for k, v in d.items()}
    sweep = override_value(overrides, "sweep", preset(name).sweep)
    out = []
    for job in grid(name, overrides):
        dataset = override_value(job, "dataset", choices["dataset"])
        fraction = override_value(job, "dataset.train_fraction")
        if fraction is None:
            fraction = OmegaConf.load(CONF / "dataset" / f"{dataset}.yaml").get("train_fraction", 1.0)
        out.append({"overrides": job, "model": override_value(job, "model", choices["model"]), "dataset": dataset,
                    "mask": override_value(job, "mask", choices["mask"]), "train_fraction": float(fraction),
                    "dir": Path(multirun) / sweep / run_name([f"experiment=ablation/{name}", *job], sweep)})
    return out


def planned(names: list[str], overrides: list[str], launcher: str, multirun: Path) -> dict[str, list[dict]]:
    """Each selected preset's jobs, every one of them checked before any preset is listed or run."""
    hydra = [f"hydra/launcher={launcher}", *(o for o in overrides if not is_task_override(o))]
    listed = {name: jobs(name, overrides, multirun) for name in names}
    for name, job_list in listed.items():
        checked_configs([[f"experiment=ablation/{name}", *j["overrides"]] for j in job_list], hydra,
                        label=f"ablation/{name} ")
    return listed


def dry_run(listed: dict[str, list[dict]], overrides: list[str], multirun: Path) -> int:
    epochs, passes = recipe_length()
    epochs = float(override_value(overrides, "recipe.epochs", epochs))
    passes = float(override_value(overrides, "recipe.passes_per_epoch", passes))
    total_jobs, total_hours = 0, 0.0
    print(f"ablation presets (conf/experiment/ablation/; {epochs:g} epochs x {passes:g} passes; "
          f"GPU-hours as make paper DRY=1 estimates them, at the paper's model sizes)")
    for name, jobs_ in listed.items():
        records = {str(j["dir"]): read_metrics(j["dir"]) for j in jobs_}
        measured = measured_rates(jobs_, records)
        finished = sum((records[str(j["dir"])] or {}).get("status") == "finished" for j in jobs_)
        hours = sum(estimate(j, records[str(j["dir"])], measured, epochs, passes) for j in jobs_
                    if (records[str(j["dir"])] or {}).get("status") != "finished")
        all_jobs = [dict(item.partition("=")[::2] for item in j["overrides"]) for j in jobs_]
        keys = " x ".join(k for k in all_jobs[0] if len({job.get(k) for job in all_jobs}) > 1)
        where = ", ".join(sorted({f"{j['model']} on {j['dataset']}" for j in jobs_}))
        print(f"  {name:<14} {len(jobs_):4d} jobs ({finished} finished)  {hours:8.1f} GPU-h left  "
              f"[{keys}; {where}]  -> {Path(multirun) / override_value(overrides, 'sweep', preset(name).sweep)}")
        total_jobs += len(jobs_)
        total_hours += hours
    print(f"  {'all':<14} {total_jobs:4d} jobs {'':<14} {total_hours:8.1f} GPU-h left ({NO_PACKING})")
    return 0


def command(name: str, launcher: str, overrides: list[str], multirun: Path) -> list[str]:
    """The preset's multirun, into the sweep folder under ``multirun`` that ``--dry`` lists."""
    default_root = Path(multirun).resolve() == MULTIRUN.resolve()
    sweep = override_value(overrides, "sweep", preset(name).sweep)
    sweep_dir = [] if default_root else [f"hydra.sweep.dir={Path(multirun) / sweep}"]
    return [sys.executable, str(TRAIN_SCRIPT), "-m", f"experiment=ablation/{name}",
            f"hydra/launcher={launcher}", *sweep_dir, *overrides]


def run(args) -> int:
    names = names_flag("--only", args.only, preset_names()) if args.only else preset_names()
    sweep = override_value(args.overrides, "sweep")
    if sweep is not None and len(names) > 1:  # one folder, one table, one gain reference for all of them
        raise ConfigError(f"sweep={sweep} would put the runs of {len(names)} presets ({', '.join(names)}) in one "
                          f"sweep, multirun/{sweep}, and one table; name a sweep for one preset at a time "
                          "(ONLY=NAME, --only NAME), or leave each its own (multirun/ablation/<name>)")
    listed = planned(names, args.overrides, launcher_flag(args.launcher), Path(args.multirun))
    if args.dry:
        return dry_run(listed, args.overrides, Path(args.multirun))
    for name in names:
        cmd = command(name, args.launcher, args.overrides, Path(args.multirun))
        print("+ " + " ".join(cmd), flush=True)
        rc = subprocess.call(cmd, cwd=REPO, env=planned_env(cmd[2:]))
        if rc:
            return rc
    return 0


@one_line_errors
def main(argv=None) -> int:
    p = CommandLine(prog="python -m gmmvit.config.ablations", description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default=None, help=f"comma-separated presets (default: all of {', '.join(preset_names())})")
    p.add_argument("--launcher", default="local", help="conf/hydra/launcher preset: local, local_gpus, slurm, ray_gpus")
    p.add_argument("--multirun", default=str(MULTIRUN), help="where sweeps live: listed there and trained there")
    p.add_argument("--dry", action="store_true", help="list the presets' jobs, what is finished, GPU-hours left")
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model=pit dataset=fashion_mnist seed=0,1,2,3,4")
    return guarded(run, p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
