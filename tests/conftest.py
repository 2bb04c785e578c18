"""Shared fixtures: composing the project's real config, small real datasets on disk."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf, open_dict

from gmmvit.cli import register_resolvers

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
SHARED = REPO.parent / "shared"
REFERENCE_PARAMS = SHARED / "paper" / "reference_params.csv"

register_resolvers()
os.environ.setdefault("WANDB_SILENT", "true")


def compose_cfg(overrides=(), run_dir=None, data_dir=None):
    """The config `python src/train.py <overrides>` would run, with hydra's runtime values filled."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
    with open_dict(cfg):
        cfg.run_dir = str(run_dir) if run_dir else "unused"
        cfg.paths.data = str(data_dir) if data_dir else str(REPO / "data")
        del cfg.hydra
    return cfg


@pytest.fixture
def compose_config():
    return compose_cfg


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """One data folder for the session: Fashion-MNIST is unpacked from Debian's package once."""
    return tmp_path_factory.mktemp("data")


def to_yaml(cfg) -> str:
    return OmegaConf.to_yaml(cfg)
