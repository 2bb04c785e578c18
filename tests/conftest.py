"""Shared fixtures: composing the project's real config, small real datasets on disk."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest

from gmmvit.cli import compose_config, register_with_hydra

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"

register_with_hydra()
os.environ.setdefault("WANDB_SILENT", "true")


compose_cfg = compose_config  # the same composition the benchmarks use


@pytest.fixture(name="compose_config")
def compose_config_fixture():
    return compose_cfg


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """One data folder for the session: Fashion-MNIST is unpacked from Debian's package once."""
    return tmp_path_factory.mktemp("data")



@pytest.fixture
def sweeps():
    """``make(tag)``: a fresh sweep name under multirun/, removed after the test."""
    names = []

    def make(tag):
        names.append(f"pytest-{tag}-{uuid.uuid4().hex[:8]}")
        return names[-1]

    yield make
    for name in names:
        shutil.rmtree(REPO / "multirun" / name, ignore_errors=True)
