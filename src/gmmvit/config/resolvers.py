"""What ``conf/`` needs registered before Hydra composes it: the schema (``gmmvit.config.schema``),
the resolvers its files call, and the one-line refusals."""

from __future__ import annotations

from omegaconf import OmegaConf

from gmmvit.catalog import CONF, run_name_excluded
from gmmvit.config import schema
from gmmvit.config.reporting import report_config_errors_in_one_line
from gmmvit.run.devices import gpu_slots
from gmmvit.sweeps import expand


def run_name(task_overrides, sweep) -> str:
    return expand.run_name(list(task_overrides), str(sweep))


def config_groups() -> str:
    """Every group of ``conf/`` with its options, a line each (``--help``): a nested group (``experiment/
    ablation``, ``hydra/launcher``) on a line of its own; Hydra's own groups but the launcher left out."""
    lines = []
    for folder in sorted(p for p in CONF.rglob("*") if p.is_dir()):
        group = folder.relative_to(CONF).as_posix()
        options = sorted(p.stem for p in folder.glob("*.yaml"))
        if options and (not group.startswith("hydra") or group == "hydra/launcher"):
            lines.append(f"{group}: {', '.join(options)}")
    return "\n".join(lines)


RESOLVERS = {
    "run_name": run_name,                    # a run's folder: its presets and overrides, or "defaults"
    "gpu_slots": gpu_slots,                  # hydra/launcher=local_gpus: runs at once on this machine
    "run_name_excluded": run_name_excluded,  # keys left out of a run's folder name (gmmvit.catalog)
    "config_groups": config_groups,          # --help's list of conf/'s groups (conf/hydra/help/gmmvit.yaml)
}


def register_with_hydra() -> None:
    schema.register()
    report_config_errors_in_one_line()
    for name, fn in RESOLVERS.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
