"""``fused=G`` on a real sweep's command line: the sweep's runs of one architecture trained in groups
of G processes' worth, each into its ordinary run folder that ``make table`` reads; a fused sweep
killed with SIGKILL resumes when relaunched."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from conftest import REPO
from gmmvit.sweeps.folders import read_run
from test_resume import TINY, wait_for

SEEDS = "seed=0,1"


def sweep_cli(sweep, data_dir, *extra):
    return [sys.executable, "src/train.py", "-m", *TINY, f"sweep={sweep}", f"paths.data={data_dir}", *extra]


def runs(sweep):
    return sorted(p for p in (REPO / "multirun" / sweep).iterdir() if (p / "config.yaml").exists())


def history(run_dir):
    return json.loads((run_dir / "metrics.json").read_text())["history"]


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_a_fused_sweep_trains_each_group_in_one_job_into_run_folders_the_table_reads(sweeps, tmp_path):
    sweep = sweeps("fused")
    out = subprocess.run(sweep_cli(sweep, tmp_path / "data", "recipe.epochs=2", "mask=none,elm,gmm", SEEDS, "fused=4"),
                         cwd=REPO,
                         capture_output=True, text=True, env=dict(os.environ, HYDRA_FULL_ERROR="1"))
    assert out.returncode == 0, out.stderr[-3000:]
    # ViT's plain runs keep the class token, its masked runs pool the mean: none fuses on its own,
    # elm and gmm together, each member with its own mask
    assert out.stdout.count("trains 2 runs as one model") == 1, out.stdout[-3000:]
    assert out.stdout.count("trains 4 runs as one model") == 1
    assert out.stdout.count("already finished") == 4  # the other jobs of each group skip
    folders = runs(sweep)
    assert len(folders) == 6
    for folder in folders:
        run = read_run(folder)
        assert run.state == "finished" and (folder / "checkpoint.pt").exists() and (folder / "best.pt").exists()
    table = subprocess.run([sys.executable, "-m", "gmmvit.sweeps.table", f"multirun/{sweep}"], cwd=REPO,
                           capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO / "src")))
    assert table.returncode == 0, table.stderr[-2000:]
    assert "(n=2)" in table.stdout and "Runs: 6 finished." in table.stdout


def test_a_fused_sweep_job_that_no_other_run_stacks_with_says_in_one_line_that_it_trains_alone(sweeps, tmp_path):
    sweep = sweeps("fused-alone")
    out = subprocess.run(sweep_cli(sweep, tmp_path / "data", "recipe.epochs=1", "recipe.warmup_epochs=0",
                                   "mask=none,gmm", "fused=2"), cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    # ViT's plain run keeps the class token its masked run drops: the two do not stack
    assert out.stdout.count("no other run of this sweep still to train fuses with") == 2, out.stdout[-3000:]
    assert "as one model" not in out.stdout and all(read_run(f).state == "finished" for f in runs(sweep))


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_fused_sweep_killed_with_sigkill_resumes_every_member_where_it_stopped(sweeps, tmp_path):
    sweep, env = sweeps("fused-kill"), dict(os.environ, HYDRA_FULL_ERROR="1")
    cli = sweep_cli(sweep, tmp_path / "data", "limit_train=1280", SEEDS, "fused=2")
    proc = subprocess.Popen(cli, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    sweep_dir = REPO / "multirun" / sweep
    both = lambda: len(list(sweep_dir.glob("*/checkpoint.pt"))) == 2  # noqa: E731
    assert wait_for(both, 150, proc), "no checkpoints appeared: " + (proc.communicate()[0] or "")[-3000:]
    assert proc.poll() is None, "the sweep ended before it could be killed; make the epochs longer"
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    killed = {f.name: len(history(f)) for f in runs(sweep)}
    assert all(1 <= n < 4 for n in killed.values()), killed

    out = subprocess.run(cli, cwd=REPO, capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    for folder in runs(sweep):
        assert read_run(folder).state == "finished"
        assert [r["epoch"] for r in history(folder)] == [0, 1, 2, 3]
    if len(set(killed.values())) == 1:  # killed between epochs of both: they resume as one group
        assert "resuming fused group" in out.stdout and "trains 2 runs as one model" in out.stdout


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_a_fused_sweep_on_the_parallel_local_gpus_launcher_trains_every_run_once(sweeps, tmp_path):
    # jobs of one group start at once: whichever locks a run first trains it, the other skips it
    sweep = sweeps("fused-parallel")
    out = subprocess.run(sweep_cli(sweep, tmp_path / "data", "recipe.epochs=2", "seed=0,1,2", "fused=3",
                                   "hydra/launcher=local_gpus", "runs_per_gpu=2"),
                         cwd=REPO, capture_output=True, text=True, env=dict(os.environ, HYDRA_FULL_ERROR="1"))
    assert out.returncode == 0, out.stderr[-3000:]
    folders = runs(sweep)
    assert len(folders) == 3
    for folder in folders:
        record = json.loads((folder / "metrics.json").read_text())
        assert record["status"] == "finished" and [r["epoch"] for r in record["history"]] == [0, 1]
