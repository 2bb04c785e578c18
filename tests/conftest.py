"""Shared fixtures: composing the project's real config, small real datasets on disk."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest

from gmmvit.config.compose import compose_config
from gmmvit.config.resolvers import register_with_hydra

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



OFFLINE_SWEEP = ["dataset=digits", "mask=none,gmm", "seed=0,1", "model.depth=1", "model.embed_dim=32",
                 "model.num_heads=2", "recipe.batch_size=16", "recipe.epochs=2", "recipe.warmup_epochs=0",
                 "recipe.passes_per_epoch=1", "limit_train=320", "limit_test=64", "threads=1", "logger=wandb",
                 "logger.mode=offline", "logger.mask_figures=1", "sweep=dashtest"]


def wandb_without_account(env: dict, tmp: Path) -> dict:
    """No API key anywhere, W&B's folders under tmp."""
    env = {k: v for k, v in env.items() if k != "WANDB_API_KEY"}
    env.update(NETRC=str(tmp / "no.netrc"), WANDB_DIR=str(tmp / "wandb_dir"), WANDB_CACHE_DIR=str(tmp / "wandb_cache"),
               WANDB_CONFIG_DIR=str(tmp / "wandb_config"), WANDB_SILENT="true")
    return env


@pytest.fixture(scope="session")
def offline_sweep(tmp_path_factory):
    """A real multirun (digits, none/gmm x 2 seeds, 20 steps per epoch, W&B offline) run once per
    session through `python src/train.py -m` with stdout a pipe, as in a log: (sweep folder, stdout)."""
    import subprocess
    import sys

    tmp = tmp_path_factory.mktemp("offline_sweep")
    sweep_dir = tmp / "multirun" / "dashtest"
    env = wandb_without_account(dict(os.environ, OMP_NUM_THREADS="1"), tmp)
    out = subprocess.run([sys.executable, "src/train.py", "-m", *OFFLINE_SWEEP, f"paths.data={tmp / 'data'}",
                          f"hydra.sweep.dir={sweep_dir}"], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return sweep_dir, out.stdout


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


@pytest.fixture
def umask():
    """``set(mask)``: the process's umask for the test, the previous one back after it."""
    before = os.umask(0o022)
    yield os.umask
    os.umask(before)
