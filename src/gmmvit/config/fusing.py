"""``fused=G`` on a sweep's command line: its jobs trained in groups of up to G, each group one process.

Every job of the sweep still starts as its launcher starts it (local, ``local_gpus``, SLURM: nothing
here depends on which). A job reads the sweep's job list from the ``multirun.yaml`` Hydra saved in
the sweep folder and finds its group: the jobs whose overrides differ from its own only in
fusable keys (the seed, the mask and its options: ``gmmvit.sweeps.expand.FUSABLE``) and whose
models stack (``gmmvit.run.fused.stacking_key``: the same body, masks aside), cut in order of job
index into groups of up to G. Each member's config is composed from its own job's overrides. The
job then trains its own run fused with every member of its group it can take over whole
(``gmmvit.run.fused_train``); a member already finished or being trained by another job is left
alone, so the jobs that start after the group's first one find their runs finished or locked and
skip with one line.

Why this way and not a launcher of its own: the job list and the run lock are already the same on
every launcher, so a group forms wherever its first job runs, and a run is trained once whichever
job gets to it first (two jobs of one group started at once split it into smaller groups; none of
their runs is lost or trained twice).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from omegaconf import OmegaConf

from gmmvit.config.compose import compose_job
from gmmvit.run import runlock
from gmmvit.run.fused import stacking_key
from gmmvit.run.records import STATUS_FAILED, STATUS_FINISHED, RunRecord
from gmmvit.sweeps.expand import alike_jobs, cut_groups, is_task_override, run_name, sweep_jobs


def group_of(jobs: list[list[str]], own: int, size: int, structure=None, to_train=None) -> list[int]:
    """Job ``own``'s fused group (job indices, its own first): the jobs alike with it by their
    overrides (``alike_jobs``) and, with ``to_train`` (job index -> whether its run is still to
    train), still to train, split by ``structure`` (job index -> its model's stacking key) and cut
    in job order into groups of up to ``size``. Cut over the runs still to train, a sweep grown by a
    seed (seed=0,1 after seed=0 finished) fuses its new runs together, not each with a finished run
    it cannot take."""
    same = [j for j in _alike_with(jobs, own) if j == own or to_train is None or to_train(j)]
    return _own_group(same, own, size, structure)


def _alike_with(jobs: list[list[str]], own: int) -> list[int]:
    return next(same for same in alike_jobs(jobs) if own in same)


def _own_group(same: list[int], own: int, size: int, structure) -> list[int]:
    group = next(g for g in cut_groups(same, size, structure) if own in g)
    return [own] + [j for j in group if j != own]


def member_config(cfg, overrides: list[str], run_dir: Path):
    """The config the job with these overrides runs, in its own run folder, on the data ``cfg`` reads."""
    return compose_job([o for o in overrides if is_task_override(o)], run_dir, cfg.paths.data)


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
    own = names.index(run_dir.name)
    configs = {own: cfg}  # composed only for the jobs that may join: alike by their overrides, still to train

    def structure(j: int):
        if j not in configs:
            configs[j] = member_config(cfg, jobs[j], run_dir.parent / names[j])
        return stacking_key(configs[j])

    if finished(run_dir) or (runlock.trainer(run_dir) or (False,))[0]:
        return [cfg]  # finished, or another job's group trains it: train() says so and skips it
    group = group_of(jobs, own, cfg.fused, structure, lambda j: not finished(run_dir.parent / names[j]))
    if len(group) == 1:
        print(f"[gmmvit] fused={cfg.fused}: no other run of this sweep still to train fuses with {run_dir.name} "
              "(runs fuse where they differ only in the seed, the mask or its options and their models stack): "
              "it trains alone", flush=True)
    return [configs[j] for j in group]


def finished(run_dir: Path) -> bool:
    """The run in ``run_dir`` is finished by its record (no record, an unreadable one: not finished)."""
    return RunRecord(run_dir).status == STATUS_FINISHED


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

    if cfg.get("fused", 1) <= 1:
        return train(cfg)
    if not in_a_sweep():
        print(f"[gmmvit] fused={cfg.fused} fuses the runs of a sweep (python src/train.py -m ...); "
              "this one run trains alone", flush=True)
        return train(cfg)
    from hydra.core.hydra_config import HydraConfig

    failed = failed_in_this_launch(Path(cfg.run_dir), Path(HydraConfig.get().sweep.dir))
    if failed is not None:
        return failed.data
    cfgs = group_configs(cfg)
    return train_group(cfgs) if len(cfgs) > 1 else train(cfg)


def failed_in_this_launch(run_dir: Path, sweep_dir: Path) -> Optional[RunRecord]:
    """The run's record where the run failed since this multirun was launched (say, its loss went
    non-finite in a fused group an earlier job trained), with one line: a launch trains each run
    once, as an unfused sweep does, rather than retrain at once what just failed. Hydra's sweeper
    writes ``multirun.yaml`` into ``sweep_dir`` as each launch starts, so a relaunch trains the run again."""
    record = RunRecord(run_dir)
    if record.status != STATUS_FAILED:
        return None
    try:
        launched = (sweep_dir / "multirun.yaml").stat().st_mtime
        failed_at = record.path.stat().st_mtime
    except OSError:
        return None
    if failed_at < launched:
        return None
    print(f"[gmmvit] {run_dir} failed in this sweep already ({record.data.get('reason')}); "
          "skipping it here: relaunch the sweep to train it again", flush=True)
    return record


__all__ = ["group_of", "member_config", "group_configs", "finished", "failed_in_this_launch", "train_job"]
