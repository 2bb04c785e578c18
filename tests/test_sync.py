"""make sync: each run's newest offline W&B log is the one uploaded (every log holds the whole run),
none of a run a trainer is still logging, none twice, and without an API key nothing, in one line."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from omegaconf import OmegaConf

from conftest import REPO, compose_cfg
from gmmvit.run import runlock, tracking
from gmmvit.sweeps import sync
from test_tracking import no_wandb_account  # noqa: F401 (a fixture)


def run_folder(sweep, name, launches):
    """A run folder as training leaves it: its config.yaml, and one offline W&B log per launch."""
    run_dir = sweep / name
    cfg = compose_cfg(["logger=wandb", "logger.mode=offline"], run_dir=run_dir)
    run_dir.mkdir(parents=True)
    OmegaConf.save(cfg, run_dir / "config.yaml")
    logs = []
    for _ in range(launches):
        before = set((run_dir / "wandb").glob("offline-run-*"))
        tracker = tracking.build_tracker(cfg, run_dir, f"id{name}", {"sweep": sweep.name})
        tracker.begin([])
        tracker.end("stopped")
        [log] = set((run_dir / "wandb").glob("offline-run-*")) - before
        logs.append(log)
    return run_dir, logs


def test_make_sync_uploads_each_runs_newest_offline_log_and_says_why_it_leaves_the_others(
        tmp_path, no_wandb_account, capsys):
    sweep = tmp_path / "sweep"
    relaunched, [_, newest] = run_folder(sweep, "relaunched", 2)
    held, _ = run_folder(sweep, "held", 1)
    uploaded, [log] = run_folder(sweep, "uploaded", 1)
    [transactions] = log.glob("run-*.wandb")
    transactions.with_suffix(".wandb.synced").touch()
    online, _ = run_folder(sweep, "online", 0)
    with runlock.acquire(held):
        assert sync.main([str(sweep), "--dry"]) == 0
    *lines, total = capsys.readouterr().out.splitlines()
    said = dict(line.split(": ", 1) for line in lines)
    assert said.pop(str(relaunched)) == f"upload {newest.name}"
    assert said.pop(str(uploaded)) == "its newest log is uploaded already"
    assert said.pop(str(online)) == "no offline W&B log (logged online, or with logger=none)"
    assert said.pop(str(held)).startswith(f"being trained (pid {os.getpid()} on ")
    assert said == {} and total == "1 of 4 run(s) to upload"


def test_make_sync_without_an_api_key_uploads_nothing_and_says_so_in_one_line(tmp_path, no_wandb_account):
    sweep = tmp_path / "sweep"
    run_folder(sweep, "stopped", 1)
    out = subprocess.run([sys.executable, "-m", "gmmvit.sweeps.sync", str(sweep)], cwd=REPO,
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr == "gmmvit: error: no W&B API key: run `wandb login` (or set WANDB_API_KEY), then make " \
        "sync again; nothing was uploaded\n"


def test_make_sync_where_the_wandb_server_cannot_be_reached_uploads_nothing_and_says_so_in_one_line(
        tmp_path, no_wandb_account):
    sweep = tmp_path / "sweep"
    run_folder(sweep, "stopped", 1)
    with socket.socket() as closed:     # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    env = dict(os.environ, WANDB_API_KEY="x" * 40, WANDB_BASE_URL=f"http://127.0.0.1:{port}")
    out = subprocess.run([sys.executable, "-m", "gmmvit.sweeps.sync", str(sweep)], cwd=REPO,
                         capture_output=True, text=True, env=env)
    assert out.returncode == 2
    assert out.stderr == f"gmmvit: error: the W&B server (127.0.0.1:{port}) cannot be reached from " \
        f"{socket.gethostname()}: make sync from a machine with network (a cluster's login node); nothing was uploaded\n"
