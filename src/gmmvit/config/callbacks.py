"""The Hydra callbacks ``conf/config.yaml`` installs: checks before a run, a sweep and each job;
"job k/n" as each job starts; the sweep's W&B dashboard when it ends."""

from __future__ import annotations

import sys
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import OmegaConf

from gmmvit.config.checks import check
from gmmvit.config.planning import refusal_line, refusals, was_planned
from gmmvit.config.reporting import fail
from gmmvit.errors import ConfigError
from gmmvit.run.records import check_writable
from gmmvit.sweeps.dashboard import dashboard
from gmmvit.sweeps.expand import run_name, sweep_jobs, sweep_size
from gmmvit.sweeps.folders import collect


class Preflight(Callback):
    """Before any job starts, the config's ranges hold (``gmmvit.config.checks.check``) and the
    output folder is writable; before a multirun, every one of its jobs passes the ranges. Each job
    is checked again as it starts, and only there against the machine: a sweep may be submitted from
    a machine without the jobs' GPUs."""

    def _check(self, config, key: str, machine: bool) -> None:
        from hydra.core.hydra_config import HydraConfig

        HydraConfig.instance().set_config(config)
        try:
            check(config, machine=machine)
            check_writable(OmegaConf.select(config, key))
        except ConfigError as exc:
            fail(str(exc))

    def on_run_start(self, config, **kwargs) -> None:
        self._check(config, "hydra.run.dir", machine=True)

    def on_multirun_start(self, config, **kwargs) -> None:
        jobs = sweep_jobs(config)
        if jobs is None:  # another sweeper chooses its jobs as it goes
            self._check(config, "hydra.sweep.dir", machine=False)
            return
        # Not the sweep's own config: Hydra composes it with each group's default option, not a
        # job's, so ``-m model=swin,pit ++model.num_heads=[3,3,3]`` would be checked against model=vit.
        try:
            check_writable(OmegaConf.select(config, "hydra.sweep.dir"))
        except ConfigError as exc:
            fail(str(exc))
        check_every_job(config, jobs)

    def on_job_start(self, config, **kwargs) -> None:
        try:
            check(config, machine=True)  # ranges and the machine, before the job reads or writes anything
        except ConfigError as exc:
            fail(str(exc))


def check_every_job(config, jobs: list[list[str]]) -> None:
    """Every job of the sweep (``jobs``: each one's overrides) passes the schema's ranges before the
    first one starts, so a bad value in a sweep list (``recipe.epochs=-1,300``) stops nothing halfway:
    it is one line, and no job ran."""
    from hydra.core.global_hydra import GlobalHydra

    if was_planned(sys.argv[1:]):  # make paper / make ablations checked these jobs just now
        return
    loader = GlobalHydra.instance().config_loader()
    _, refused = refusals(jobs, lambda overrides: loader.load_sweep_config(config, overrides))
    if refused:
        fail(refusal_line(refused, len(jobs)))


class JobAnnouncer(Callback):
    """Hydra callback: each multirun job says which one of how many it is, as it starts."""

    def on_job_start(self, config, **kwargs) -> None:
        from hydra.types import RunMode

        hydra_cfg = config.hydra
        if hydra_cfg.mode != RunMode.MULTIRUN:
            return
        total = sweep_size(Path(hydra_cfg.sweep.dir))
        of = f"/{total}" if total else ""
        # named as its folder is, so that the line and multirun/<sweep>/<run> read the same
        name = run_name(list(hydra_cfg.overrides.task), config.get("sweep")) or "defaults"
        print(f"[gmmvit] job {hydra_cfg.job.num + 1}{of}: {name}", flush=True)


class Publish(Callback):
    """Hydra callback: the sweep's dashboard once its multirun ends (never fails the sweep)."""

    def on_multirun_end(self, config, **kwargs) -> None:
        try:
            if config.logger.name != "wandb":
                return
            sweep_dir = Path(config.hydra.sweep.dir)
            for folder, runs in collect([sweep_dir]).items():
                dashboard(folder, runs, at_sweep_end=True)
        except Exception as exc:
            print(f"[gmmvit] W&B dashboard skipped ({type(exc).__name__}: {exc})", flush=True)
