"""What ``conf/`` needs registered before Hydra composes it: the schema (``gmmvit.config.schema``),
the resolvers its files call, and the one-line refusals."""

from __future__ import annotations

from omegaconf import OmegaConf

from gmmvit.catalog import run_name_excluded
from gmmvit.config import schema
from gmmvit.config.reporting import report_config_errors_in_one_line
from gmmvit.run.devices import gpu_slots
from gmmvit.sweeps import expand


def run_name(task_overrides, sweep) -> str:
    return expand.run_name(list(task_overrides), str(sweep))


RESOLVERS = {
    "run_name": run_name,                    # a run's folder: its presets and overrides, or "defaults"
    "gpu_slots": gpu_slots,                  # hydra/launcher=local_gpus: runs at once on this machine
    "run_name_excluded": run_name_excluded,  # keys left out of a run's folder name (gmmvit.catalog)
}


def register_with_hydra() -> None:
    schema.register()
    report_config_errors_in_one_line()
    for name, fn in RESOLVERS.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
