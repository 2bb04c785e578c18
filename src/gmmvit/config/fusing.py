"""``fused=G`` on a sweep's command line: its jobs trained in groups of up to G, each group one process.

Every job of the sweep still starts as its launcher starts it (local, ``local_gpus``, SLURM: nothing
here depends on which). A job reads the sweep's job list from the ``multirun.yaml`` Hydra saved in
the sweep folder and finds its group: the jobs whose overrides differ from its own only in
``FUSABLE`` keys, cut in order of job index into groups of up to G. The job then trains its own run
fused with every member of its group it can take over whole (``gmmvit.run.fused_train``); a member
already finished or being trained by another job is left alone, so the jobs that start after the
group's first one find their runs finished or locked and skip with one line.

Why this way and not a launcher of its own: the job list and the run lock are already the same on
every launcher, so a group forms wherever its first job runs, and a run is trained once whichever
job gets to it first (two jobs of one group started at once split it into smaller groups; none of
their runs is lost or trained twice).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Optional

from omegaconf import OmegaConf, open_dict

from gmmvit.sweeps.expand import FUSABLE, fused_groups, override_key, run_name, sweep_jobs

def group_of(jobs: list[list[str]], own: int, size: int) -> list[int]:
    """Job ``own``'s fused group (job indices, its own first; ``gmmvit.sweeps.expand.fused_groups``)."""
    group = next(g for g in fused_groups(jobs, size) if own in g)
    return [own] + [j for j in group if j != own]


def member_config(cfg, overrides: list[str], run_dir: Path):
    """The job ``cfg``'s config as the member with these overrides has it: its ``FUSABLE`` values
    and its own run folder."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    member = copy.deepcopy(cfg)
    parser = OverridesParser.create()
    with open_dict(member):
        for override in parser.parse_overrides([o for o in overrides if override_key(o) in FUSABLE]):
            OmegaConf.update(member, override.key_or_group, override.value(), merge=False)
        member.run_dir = str(run_dir)
    return member


def group_configs(cfg) -> list:
    """The configs of ``cfg``'s group in the running multirun, its own first; ``[cfg]`` alone when
    there is no group to form (one line saying why, where that is not plain)."""
    from hydra.core.hydra_config import HydraConfig

    hydra = HydraConfig.get()
    jobs = _saved_jobs(Path(hydra.sweep.dir))
    if jobs is None:
        print(f"[gmmvit] fused={cfg.fused}: no job list of this sweep in {hydra.sweep.dir}/multirun.yaml "
              "(another sweeper chooses its jobs as it goes): this job trains alone", flush=True)
        return [cfg]
    run_dir = Path(cfg.run_dir)
    names = [run_name(job, cfg.sweep) for job in jobs]
    if run_dir.name not in names:
        return [cfg]
    group = group_of(jobs, names.index(run_dir.name), cfg.fused)
    return [cfg] + [member_config(cfg, jobs[j], run_dir.parent / names[j]) for j in group[1:]]


def _saved_jobs(sweep_dir: Path) -> Optional[list[list[str]]]:
    try:
        return sweep_jobs(OmegaConf.load(sweep_dir / "multirun.yaml"))
    except OSError:
        return None


def train_job(cfg) -> dict:
    """What the entry point runs for each job: ``train(cfg)``, or with ``fused=G`` in a multirun its
    group fused (``gmmvit.run.fused_train.train_group``)."""
    from gmmvit.run.fused_train import train_group
    from gmmvit.run.identity import in_a_sweep
    from gmmvit.run.train import train

    if cfg.get("fused", 1) <= 1 or not in_a_sweep():
        return train(cfg)
    cfgs = group_configs(cfg)
    return train_group(cfgs) if len(cfgs) > 1 else train(cfg)


__all__ = ["group_of", "member_config", "group_configs", "train_job"]
