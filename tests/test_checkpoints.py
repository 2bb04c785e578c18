"""Checkpoints hold tensors and plain types and load with weights_only=True: one carrying a pickled
object is refused without running it; an earlier gmmvit's checkpoint is rewritten once on request."""

from __future__ import annotations

import random
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import REPO
from gmmvit.run import records
from gmmvit.run import train as train_mod
from gmmvit.run.records import CHECKPOINT, CheckpointError, load_checkpoint, save_checkpoint
from test_faults import interrupted_run


class WritesAFile:
    """Unpickling this object opens (creates) a file: code run by loading."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def test_rng_state_round_trips_through_a_weights_only_load(tmp_path):
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    save_checkpoint(tmp_path, {"epoch": 1, "rng": records.rng_state()})
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(2), np.random.seed(2), torch.manual_seed(2)
    records.set_rng_state(torch.load(tmp_path / CHECKPOINT, weights_only=True)["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_a_checkpoint_carrying_a_pickled_object_is_refused_and_its_code_never_runs(tmp_path):
    marker = tmp_path / "code-ran"
    save_checkpoint(tmp_path, {"epoch": 1, "model": {}, "payload": WritesAFile(marker)})
    with pytest.raises(CheckpointError, match="holds a pickled object"):
        load_checkpoint(tmp_path)
    assert not marker.exists()


def test_upgrade_without_trust_refuses_a_pickled_object_in_one_line_and_never_runs_it(tmp_path):
    marker = tmp_path / "code-ran"
    save_checkpoint(tmp_path, {"epoch": 1, "model": {}, "payload": WritesAFile(marker)})
    out = subprocess.run([sys.executable, "-m", "gmmvit.run.records", "upgrade", str(tmp_path)], cwd=REPO,
                         capture_output=True, text=True)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.startswith("gmmvit: error:") and "upgrade --trust" in out.stderr
    assert not marker.exists()


@pytest.mark.timeout(120)
def test_an_earlier_format_checkpoint_is_refused_then_upgraded_once_and_resumed(compose_config, tmp_path,
                                                                             data_dir, monkeypatch):
    run_dir = tmp_path / "run"
    cfg = interrupted_run(compose_config, run_dir, data_dir, monkeypatch)
    for name in (records.CHECKPOINT, records.PREVIOUS_CHECKPOINT):  # as an earlier gmmvit saved them
        state = torch.load(run_dir / name, weights_only=True)
        state["rng"].update(python=random.getstate(), numpy=np.random.get_state())
        torch.save(state, run_dir / name)
    with pytest.raises(CheckpointError, match="python -m gmmvit.run.records upgrade --trust"):
        load_checkpoint(run_dir)
    out = subprocess.run([sys.executable, "-m", "gmmvit.run.records", "upgrade", "--trust", str(run_dir)], cwd=REPO,
                         capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.count("rewrote") == 2, out.stderr
    result = train_mod.train(cfg)
    assert result["status"] == "finished" and [r["epoch"] for r in result["history"]] == [0, 1, 2]
