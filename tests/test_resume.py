"""Resume: a real training process killed with SIGKILL mid-epoch resumes from its own folder, with one
continuous history equal to an uninterrupted run's; a finished run is found and skipped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO
from gmmvit.sweeps.folders import read_run

# deterministic CPU training, several short epochs (~1-2 s each on one thread)
TINY = ["dataset=digits", "mask=gmm", "model.depth=1", "model.embed_dim=32", "model.num_heads=2",
        "recipe.batch_size=32", "recipe.epochs=4", "recipe.warmup_epochs=1", "recipe.passes_per_epoch=1",
        "limit_train=640", "limit_test=128", "deterministic=true", "threads=1", "workers=0", "logger=none"]
EXCLUDED = ("logger=", "threads=", "workers=", "sweep=")


def cli(sweep, data_dir, extra=()):
    return [sys.executable, "src/train.py", *TINY, f"sweep={sweep}", f"paths.data={data_dir}", *extra]


def run_dir_of(sweep):
    # the folder Hydra derives from the overrides (sorted, excluded keys dropped): paths.data varies
    # per session, so it is found by listing the sweep folder
    dirs = [p for p in (REPO / "multirun" / sweep).iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert len(dirs) == 1, dirs
    return dirs[0]


def metrics(run_dir):
    return json.loads((run_dir / "metrics.json").read_text())


def wait_for(predicate, timeout, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


@pytest.mark.timeout(150)
def test_sigkill_mid_epoch_then_relaunch_equals_uninterrupted_run(sweeps, tmp_path):
    data = tmp_path / "data"
    env = dict(os.environ, HYDRA_FULL_ERROR="1")

    # the reference: the same run, never interrupted
    ref_sweep = sweeps("ref")
    out = subprocess.run(cli(ref_sweep, data), cwd=REPO, capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    ref = metrics(run_dir_of(ref_sweep))
    assert ref["status"] == "finished" and len(ref["history"]) == 4

    # the same run killed with SIGKILL in its second epoch (after the first checkpoint exists)
    sweep = sweeps("kill")
    proc = subprocess.Popen(cli(sweep, data), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env)
    sweep_dir = REPO / "multirun" / sweep
    first_ckpt = lambda: any(sweep_dir.glob("*/checkpoint.pt"))  # noqa: E731
    assert wait_for(first_ckpt, 90, proc), "no checkpoint appeared: " + (proc.communicate()[0] or "")[-3000:]
    epoch_s = ref["history"][1]["epoch_s"]
    time.sleep(min(0.4 * epoch_s, 1.0))  # well inside epoch 2
    assert proc.poll() is None, "the run ended before it could be killed; make the epochs longer"
    proc.send_signal(signal.SIGKILL)
    killed_log = proc.communicate()[0]
    assert proc.returncode == -signal.SIGKILL
    run_dir = run_dir_of(sweep)
    killed = metrics(run_dir)
    assert killed["status"] == "running" and 1 <= len(killed["history"]) < 4, killed_log[-2000:]
    assert read_run(run_dir).state == "stopped"  # make status: stopped the moment its trainer died

    # relaunching the same command finds the folder and resumes it
    out = subprocess.run(cli(sweep, data), cwd=REPO, capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    n_done = len(killed["history"])
    assert f"taking over {run_dir.name} from pid {proc.pid}" in out.stdout, out.stdout[-3000:]
    assert f"resuming {run_dir.name} after epoch {n_done}/" in out.stdout, out.stdout[-3000:]
    resumed = metrics(run_dir)
    assert resumed["status"] == "finished"
    assert [r["epoch"] for r in resumed["history"]] == [0, 1, 2, 3]
    # deterministic on the CPU: bit-identical to the uninterrupted run
    assert [r["train_loss"] for r in resumed["history"]] == [r["train_loss"] for r in ref["history"]]
    assert [r["test_top1"] for r in resumed["history"]] == [r["test_top1"] for r in ref["history"]]
    assert resumed["final"]["best_top1"] == ref["final"]["best_top1"]
    assert resumed["final"]["final_top1"] == ref["final"]["final_top1"]

    # relaunching a finished run trains nothing and says so
    before = (run_dir / "metrics.json").read_bytes()
    ckpt_mtime = (run_dir / "checkpoint.pt").stat().st_mtime_ns
    out = subprocess.run(cli(sweep, data), cwd=REPO, capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "already finished" in out.stdout and " loss " not in out.stdout  # no step or epoch trained
    assert (run_dir / "metrics.json").read_bytes() == before
    assert (run_dir / "checkpoint.pt").stat().st_mtime_ns == ckpt_mtime
