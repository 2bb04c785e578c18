"""The one path a grid launcher (``make paper``, ``make ablations``) plans through: its flags checked
for what they take, and every job it lists composed and checked as ``src/train.py -m`` checks a
sweep's jobs before the first one starts (``gmmvit.config.callbacks.check_every_job`` shares
``refusals``). So a dry plan lists only jobs that would run, a launch of several multiruns refuses
before the first starts, and either refuses in one line (``ConfigError``, exit 2 through ``guarded``)."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Callable, Iterable

from gmmvit.catalog import CONF
from gmmvit.config.checks import check
from gmmvit.config.compose import compose_config
from gmmvit.config.refusals import explain
from gmmvit.errors import ConfigError


def refusals(jobs: list[list[str]], load: Callable) -> tuple[list, list[tuple[int, ConfigError]]]:
    """Each job's config (``load``: a job's overrides to its config), None where refused, and the
    refusals as (job number from 1, the one-line error). Ranges only, not this machine: a sweep may
    be planned or submitted from a machine without the jobs' GPUs."""
    configs, refused = [], []
    for index, overrides in enumerate(jobs, 1):
        try:
            cfg = load(overrides)
            check(cfg, machine=False)
        except ConfigError as exc:
            cfg = None
            refused.append((index, exc))
        except Exception as exc:  # a job Hydra cannot compose (model=vit,resnet): one line too
            line = explain(exc, overrides)
            if line is None:
                raise
            cfg = None
            refused.append((index, ConfigError(line)))
        configs.append(cfg)
    return configs, refused


def refusal_line(refused: list[tuple[int, ConfigError]], total: int, label: str = "") -> str:
    index, exc = refused[0]
    if len(refused) == total and len({str(e) for _, e in refused}) == 1:
        # a value every job shares: the line is the value's, not one job's
        return f"{label.rstrip()}: {exc}" if label else str(exc)
    more = f" ({len(refused) - 1} more job(s) refused too)" if len(refused) > 1 else ""
    return f"{label}job {index}/{total}: {exc}{more}; no job was started"


def checked_configs(jobs: list[list[str]], hydra_overrides: Iterable[str] = (), label: str = "") -> list:
    """Each job's config (a job: its overrides, the preset first) with Hydra's own overrides of the
    launch (``hydra/launcher=slurm hydra.launcher.partition=gpu``), every one checked;
    ``ConfigError`` naming the first job refused, and how many more are."""
    hydra = list(hydra_overrides)
    configs, refused = refusals(jobs, lambda overrides: compose_config([*overrides, *hydra]))
    if refused:
        raise ConfigError(refusal_line(refused, len(jobs), label))
    return configs


def launcher_options() -> list[str]:
    """What ``hydra/launcher`` takes: conf/hydra/launcher's presets and the installed plugins' own."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return sorted(GlobalHydra.instance().config_loader().get_group_options("hydra/launcher"))


def launcher_flag(name: str) -> str:
    options = launcher_options()
    if name not in options:
        raise ConfigError(f"--launcher {name}: --launcher takes one of {', '.join(options)} "
                          "(LAUNCHER=slurm; conf/hydra/launcher/ holds the presets)")
    return name


def seeds_flag(text: str) -> str:
    """``--seeds 0,1,2``; the schema's upper bound is checked with each job's config."""
    if not all(part.strip().isdigit() for part in text.split(",")):
        raise ConfigError(f"--seeds {text}: --seeds takes comma-separated whole numbers >= 0 (SEEDS=0,1,2)")
    return text


def names_flag(flag: str, text: str, options: list[str]) -> list[str]:
    """The names of a comma-separated flag, each one of ``options``."""
    names = text.split(",")
    if not all(name in options for name in names):
        raise ConfigError(f"{flag} {text}: {flag} takes comma-separated names from {', '.join(options)}")
    return names


# set by a planner on the multirun it launches: the jobs of that command line were checked just now
PLANNED = "GMMVIT_PLANNED_LAUNCH"


def launch_digest(argv: Iterable[str]) -> str:
    """What a sweep's jobs are made of: its command line and every file of ``conf/``."""
    digest = hashlib.sha256(json.dumps(list(argv)).encode())
    for path in sorted(CONF.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(CONF).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def planned_env(argv: list[str]) -> dict:
    """The environment for launching ``src/train.py <argv>`` whose jobs the planner checked: the
    multirun then skips composing them all again (``was_planned``)."""
    return {**os.environ, PLANNED: launch_digest(argv)}


def was_planned(argv: list[str]) -> bool:
    return os.environ.get(PLANNED) == launch_digest(argv)
