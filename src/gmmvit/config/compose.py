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
