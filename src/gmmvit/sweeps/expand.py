"""A sweep's jobs as Hydra expands them, and the folder each job's run lives in.

One expansion for everything that needs a sweep's jobs before or while Hydra runs them: the
preflight check of every job, "job k/n", ``make status``'s count of jobs not started, and the job
lists of ``make paper`` and ``make ablations``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable, Hashable, Optional

from omegaconf import OmegaConf

from gmmvit.catalog import CONF, run_name_excluded

BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def sweep_jobs(config) -> Optional[list[list[str]]]:
    """Each job's overrides, in the order Hydra's basic sweeper launches them: its ``params`` (the
    experiment presets' grid) and then the command line. None under another sweeper, which chooses
    its jobs as it goes."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if OmegaConf.select(config, "hydra.sweeper._target_") != BASIC_SWEEPER:
        return None
    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    task = OmegaConf.select(config, "hydra.overrides.task") or []
    arguments = [f"{key}={value}" for key, value in params.items()] + list(task)
    return BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(arguments), None)[0]


def preset_jobs(preset: str, task: list[str]) -> list[list[str]]:
    """Each job's overrides of ``src/train.py -m experiment=<preset> <task>`` as Hydra's basic sweeper
    expands them: the preset's ``hydra.sweeper.params``, then ``task``; a later value of a key
    replaces an earlier one (``model=pit`` after ``model=vit,swin``: PiT alone)."""
    params = OmegaConf.to_container(OmegaConf.load(CONF / "experiment" / f"{preset}.yaml").hydra.sweeper.params)
    return sweep_jobs(OmegaConf.create({"hydra": {"sweeper": {"_target_": BASIC_SWEEPER, "params": params},
                                                  "overrides": {"task": list(task)}}}))


def override_value(overrides: list[str], key: str, default=None):
    """The value the last override of ``key`` gives it, as text, or ``default``."""
    values = [o.split("=", 1)[1] for o in overrides if "=" in o and override_key(o) == key]
    return values[-1] if values else default


def sweep_size(sweep_dir: Path) -> Optional[int]:
    """Jobs in the multirun whose ``multirun.yaml`` Hydra saved in ``sweep_dir``, or None."""
    try:
        jobs = sweep_jobs(OmegaConf.load(Path(sweep_dir) / "multirun.yaml"))
    except Exception:           # a glob over a config group, no file: no total
        return None
    return None if jobs is None else len(jobs)


def saved_job_folders(sweep_dir: Path) -> Optional[list[str]]:
    """The run folder (its name in ``sweep_dir``) of each job of the multirun whose ``multirun.yaml``
    Hydra saved there last, or None. Named, not counted: a sweep folder may hold the runs of earlier
    multiruns too (``seed=0`` first, ``seed=1`` later), so its folders minus this job list's length
    tells nothing of which jobs have started."""
    try:
        config = OmegaConf.load(Path(sweep_dir) / "multirun.yaml")
        jobs = sweep_jobs(config)
        sweep = OmegaConf.select(config, "sweep")
        return None if jobs is None else [run_name(job, override_value(job, "sweep", sweep)) for job in jobs]
    except Exception:           # no file, or a glob over a config group: no job list
        return None


def saved_fused_size(sweep_dir: Path) -> int:
    """The ``fused`` G of the multirun whose ``multirun.yaml`` Hydra saved in ``sweep_dir`` (1: not
    fused, or no job list)."""
    try:
        config = OmegaConf.load(Path(sweep_dir) / "multirun.yaml")
        jobs = sweep_jobs(config) or []
        default = OmegaConf.select(config, "fused", default=1)
        return max([int(override_value(job, "fused", default)) for job in jobs] or [1])
    except Exception:           # no file, a glob over a config group, a value that is no number
        return 1


def run_name(overrides: list[str], sweep: Optional[str] = None) -> str:
    """The folder Hydra gives a job with these task overrides in the sweep ``sweep`` (conf/config.yaml's
    ``run_name`` resolver calls this): the overrides, less the speed settings and bookkeeping
    (``hydra.job.override_dirname``), after the presets (``experiment=...``) that change what is
    trained. A preset run in the sweep folder the preset names (``experiment=demo`` in multirun/demo/)
    is known by that folder and keeps its name without it; given another sweep, the preset joins the
    name (``experiment=demo,mask=gmm``, ``experiment=ablation-pooling,...``), so a run with it and one
    without never share a folder. Runs without a preset keep the name of their overrides alone. An
    override's ``+``/``++`` is how Hydra applies it, not what the run is: ``++model.depths=[1,1,1]``
    (in a sweep over models, which Hydra checks against the default one) names the folder
    ``model.depths=[1,1,1]`` names."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides([str(o) for o in overrides])
    excluded = run_name_excluded()
    named = sorted(_as_named(o) for o in parsed if o.key_or_group not in excluded)
    presets = sorted(f"experiment={name.replace('/', '-')}" for name in _presets(parsed)
                     if sweep is None or _own_sweep(name) != str(sweep))
    return within_name_limit([*presets, *named]) if presets or named else "defaults"


NAME_MAX = 255   # bytes in one folder name: Linux's filesystems (ext4, xfs, Lustre, NFS) take no more


def within_name_limit(parts: list[str]) -> str:
    """The overrides ``parts`` joined by commas, or where that is longer than a folder name can be (a
    sweep of many overrides): the presets, the seed, the group choices (model, mask, dataset,
    recipe) and as many of the other overrides as fit, the longest left out first, in their order,
    then ``hash=`` the first 12 hex digits of the whole name's SHA-1. Still one folder per run, the
    same one whoever names it (Hydra, status, the planners), and a sweep folder still shows which
    run each holds."""
    name = ",".join(parts)
    if len(name.encode()) <= NAME_MAX:
        return name
    digest = f"hash={hashlib.sha1(name.encode()).hexdigest()[:12]}"
    kept = list(parts)
    # the identifying overrides go only should they alone not fit
    for part in sorted(parts, key=lambda p: (_identifies(p), -len(p.encode()), p)):
        if len(",".join([*kept, digest]).encode()) <= NAME_MAX:
            break
        kept.remove(part)
    return ",".join([*kept, digest])


def _identifies(part: str) -> bool:
    """Whether the override ``part`` is one a researcher tells a sweep's runs apart by: a preset, the
    seed, a config group's choice (``model=pit``; not ``model.depth=2``)."""
    key = part.split("=", 1)[0]
    return key in ("experiment", "seed") or (CONF / key).is_dir()


def _as_named(override) -> str:
    """What Hydra's ``hydra.job.override_dirname`` writes for ``override`` (its text as typed), less
    the ``+``/``++`` that only says how to apply it."""
    text = override.input_line
    return text.lstrip("+") if override.is_add() or override.is_force_add() else text


def _presets(parsed) -> list[str]:
    return [str(o.value()) for o in parsed if o.key_or_group == "experiment" and not o.is_delete()
            and isinstance(o.value(), str) and o.value() not in ("null", "")]


def _own_sweep(preset: str) -> Optional[str]:
    """The sweep folder a preset names for its runs (``conf/experiment/demo.yaml``: ``sweep: demo``)."""
    path = CONF / "experiment" / f"{preset}.yaml"
    sweep = OmegaConf.load(path).get("sweep") if path.is_file() else None
    return None if sweep is None else str(sweep)


# Keys whose values leave the model's body and the step's schedule alike, so runs differing only in
# them stack into one fused model (``fused=G``): the seed, the mask and the mask's options (each
# member keeps its own mask: ``gmmvit.nn.mask_choice``). Where a mask changes the body too (ViT's
# class token goes with plain attention), the runs' models tell apart (``structure`` below).
FUSABLE = ("seed", "mask")


def is_fusable(key: str) -> bool:
    return key in FUSABLE or key.startswith("mask.")


def override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def alike_jobs(jobs: list[list[str]]) -> list[list[int]]:
    """The sweep's jobs (their overrides) as sets of job indices, in job order, whose overrides
    differ only in fusable keys (``is_fusable``)."""
    def kind(job: list[str]) -> tuple:
        return (tuple(sorted(o for o in job if not is_fusable(override_key(o)))),
                tuple(sorted(override_key(o) for o in job if is_fusable(override_key(o)))))

    alike: dict[tuple, list[int]] = {}
    for j, job in enumerate(jobs):
        alike.setdefault(kind(job), []).append(j)
    return list(alike.values())


def cut_groups(same: list[int], size: int, structure: Optional[Callable[[int], Hashable]] = None) -> list[list[int]]:
    """Jobs ``same`` (alike by their overrides) in fused groups of up to ``size``, in job order;
    with ``structure`` (job index -> what its model must share to stack), split by it first."""
    by_structure: dict = {}
    for j in same:
        by_structure.setdefault(None if structure is None else structure(j), []).append(j)
    return [part[at:at + size] for part in by_structure.values() for at in range(0, len(part), size)]


def fused_groups(jobs: list[list[str]], size: int, structure: Optional[Callable[[int], Hashable]] = None,
                 to_train: Optional[Callable[[int], bool]] = None) -> list[list[int]]:
    """The sweep's jobs in fused groups of job indices (``alike_jobs`` cut by ``cut_groups``),
    ordered by their first job; with ``to_train`` (job index -> whether its run is still to train),
    of those jobs alone, as the jobs cut them (``gmmvit.config.fusing``)."""
    keep = to_train or (lambda j: True)
    return sorted((group for same in alike_jobs(jobs)
                   for group in cut_groups([j for j in same if keep(j)], size, structure)),
                  key=lambda group: group[0])


def is_task_override(text: str) -> bool:
    """An override of the run's config, not of Hydra's own (``hydra.launcher...``) or a flag."""
    return not text.startswith(("hydra.", "hydra/", "+hydra", "~hydra", "-"))


__all__ = ["BASIC_SWEEPER", "FUSABLE", "sweep_jobs", "preset_jobs", "override_value", "sweep_size", "saved_job_folders",
           "saved_fused_size",
           "run_name", "override_key", "is_fusable",
           "alike_jobs", "cut_groups", "fused_groups",
           "is_task_override"]
