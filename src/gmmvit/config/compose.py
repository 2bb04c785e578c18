"""The config a command line would run, composed without Hydra's launcher (benchmarks, tests,
tools)."""

from __future__ import annotations

from gmmvit.catalog import CONF, REPO
from gmmvit.config.resolvers import register_with_hydra


def compose_config(overrides=(), run_dir=None, data_dir=None):
    """The config ``python src/train.py <overrides>`` would run, with Hydra's runtime values filled."""
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


def compose_job(overrides, run_dir, data_dir):
    """``compose_config``, also from inside a running Hydra job (a fused job composes its members'
    configs there, on the job's own search path)."""
    from hydra import compose
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    if not (GlobalHydra.instance().is_initialized() and HydraConfig.initialized()):
        return compose_config(overrides, run_dir, data_dir)
    cfg = compose(HydraConfig.get().job.config_name, overrides=list(overrides))
    with open_dict(cfg):
        cfg.run_dir = str(run_dir)
        cfg.paths.data = str(data_dir)
    return cfg
