"""Command-line glue: Hydra resolvers and the one-line error policy."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

from hydra.experimental.callback import Callback
from omegaconf import OmegaConf

from gmmvit.data import DatasetUnavailable
from gmmvit.models.common import ConfigError
from gmmvit.records import CheckpointError

# errors whose message already names the fix: printed as one line, exit code 2
USER_ERRORS = (DatasetUnavailable, ConfigError, CheckpointError)


def run_name(override_dirname: str) -> str:
    return override_dirname or "defaults"


def gpu_slots(runs_per_gpu=1) -> int:
    from gmmvit.devices import gpu_slots as slots

    return slots(runs_per_gpu)


def register_with_hydra() -> None:
    """The resolvers and the config schema (gmmvit.schema) that conf/ uses; schema refusals in one line."""
    from gmmvit import schema

    schema.register()
    report_config_errors_in_one_line()
    for name, fn in (("run_name", run_name), ("gpu_slots", gpu_slots)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


def user_error(exc: BaseException):
    """The user error behind ``exc`` (Hydra's instantiate wraps them), or None."""
    while exc is not None:
        if isinstance(exc, USER_ERRORS):
            return exc
        exc = exc.__cause__
    return None


def fail(message: str) -> None:
    print(f"gmmvit: error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def report_config_errors_in_one_line() -> None:
    """A config that fails the schema (gmmvit.schema) ends in one line naming the key, the value and
    what the key takes, with exit code 2.

    Hydra reports every error of its command line through ``hydra._internal.utils.run_and_report``
    (several lines, exit code 1); this wraps it so that schema refusals are caught first. Any other
    error (an unknown config group option, for one) keeps Hydra's own message.
    """
    import hydra._internal.utils as hydra_utils

    from gmmvit.schema import explain

    report = hydra_utils.run_and_report
    if getattr(report, "gmmvit", False):
        return

    def run_and_report(func):
        def run():
            try:
                return func()
            except Exception as exc:
                line = explain(exc)
                if line is None:
                    raise
                fail(line)
        return report(run)

    run_and_report.gmmvit = True
    hydra_utils.run_and_report = run_and_report


def guarded(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        cause = user_error(exc)
        if cause is None:
            raise
        fail(str(cause))


def check_writable(folder) -> None:
    """Create ``folder`` and write a probe file in it; one line naming the fix when that fails."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-probe-{__import__('os').getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"output folder {folder} is not writable ({exc.strerror or exc}); run from a writable "
            "checkout or point hydra.run.dir / hydra.sweep.dir at a writable folder") from None


class Preflight(Callback):
    """Hydra callback: before any job starts, the config's ranges hold (gmmvit.schema.check) and the
    output folder is writable. A sweep's jobs are checked again as they start (train()), and only
    there against the machine: a sweep may be submitted from a machine without the jobs' GPUs."""

    def _check(self, config, key: str, machine: bool) -> None:
        from hydra.core.hydra_config import HydraConfig

        from gmmvit.schema import check

        HydraConfig.instance().set_config(config)
        try:
            check(config, machine=machine)
            check_writable(OmegaConf.select(config, key))
        except ConfigError as exc:
            fail(str(exc))

    def on_run_start(self, config, **kwargs) -> None:
        self._check(config, "hydra.run.dir", machine=True)

    def on_multirun_start(self, config, **kwargs) -> None:
        self._check(config, "hydra.sweep.dir", machine=False)
        check_every_job(config)


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


def check_every_job(config) -> None:
    """Every job of the sweep passes the schema's ranges before the first one starts, so a bad value
    in a sweep list (``recipe.epochs=-1,300``) stops nothing halfway: it is one line, and no job ran."""
    from hydra.core.global_hydra import GlobalHydra

    from gmmvit.schema import check

    jobs = sweep_jobs(config)
    if jobs is None:
        return
    loader = GlobalHydra.instance().config_loader()
    refused = []
    for index, overrides in enumerate(jobs, 1):
        try:
            check(loader.load_sweep_config(config, overrides), machine=False)
        except ConfigError as exc:
            refused.append((index, exc))
    if refused:
        index, exc = refused[0]
        more = f" ({len(refused) - 1} more job(s) refused too)" if len(refused) > 1 else ""
        fail(f"job {index}/{len(jobs)}: {exc}{more}; no job was started")


REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "conf"


def compose_config(overrides=(), run_dir=None, data_dir=None):
    """The config ``python src/train.py <overrides>`` would run, with Hydra's runtime values filled
    (for code that builds runs without Hydra's launcher: benchmarks, tests)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    register_with_hydra()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
    with open_dict(cfg):
        cfg.run_dir = str(run_dir) if run_dir else "unused"
        cfg.paths.data = str(data_dir) if data_dir else str(REPO / "data")
        del cfg.hydra
    return cfg

