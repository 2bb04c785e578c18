"""One trainer per run folder: a second launch of a run that is training skips it with one line;
a dead holder's lock (same host: no process holds it; another host: a stale heartbeat) is taken over."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time

import pytest

from conftest import REPO
from gmmvit.run import runlock
from test_resume import TINY, metrics, run_dir_of


def lock_file(run_dir, host, pid, age_s=0.0):
    """A lock file as another process left it: nobody holds its flock."""
    path = run_dir / runlock.LOCK
    path.write_text(json.dumps({"host": host, "pid": pid, "started": time.time() - age_s}))
    os.utime(path, (time.time() - age_s,) * 2)
    return path


def dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_held_run_folder_is_refused_naming_its_holder(tmp_path):
    with runlock.acquire(tmp_path):
        with pytest.raises(runlock.Held, match=f"pid {os.getpid()} on {socket.gethostname()} since"):
            runlock.acquire(tmp_path)
    assert not (tmp_path / runlock.LOCK).exists()
    runlock.acquire(tmp_path).release()


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o002, 0o664)])
def test_the_lock_file_gets_the_mode_a_plain_open_gives_under_the_umask(tmp_path, umask, mask, mode):
    umask(mask)
    with runlock.acquire(tmp_path):
        assert oct(stat.S_IMODE((tmp_path / runlock.LOCK).stat().st_mode)) == oct(mode)


def test_a_lock_left_by_a_dead_process_on_this_host_is_taken_over(tmp_path):
    pid = dead_pid()
    lock_file(tmp_path, socket.gethostname(), pid)
    said = []
    with runlock.acquire(tmp_path, log=lambda line, **kw: said.append(line)):
        assert json.loads((tmp_path / runlock.LOCK).read_text())["pid"] == os.getpid()
    assert len(said) == 1 and f"from pid {pid}" in said[0] and "that process is gone" in said[0]


def test_another_hosts_lock_is_kept_while_its_heartbeat_is_fresh(tmp_path):
    lock_file(tmp_path, "gpu-node-7", 4242, age_s=60)
    with pytest.raises(runlock.Held, match="pid 4242 on gpu-node-7"):
        runlock.acquire(tmp_path, stale_s=600)


def test_another_hosts_lock_with_a_stale_heartbeat_is_taken_over(tmp_path):
    lock_file(tmp_path, "gpu-node-7", 4242, age_s=3600)
    said = []
    with runlock.acquire(tmp_path, stale_s=600, log=lambda line, **kw: said.append(line)):
        pass
    assert len(said) == 1 and "gpu-node-7" in said[0] and "heartbeat stopped 60 min ago" in said[0]


def test_a_lock_of_the_same_slurm_job_is_taken_over_when_the_job_is_requeued_elsewhere(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    path = lock_file(tmp_path, "gpu-node-7", 4242, age_s=60)
    path.write_text(json.dumps({"host": "gpu-node-7", "pid": 4242, "started": time.time(), "slurm_job": "77"}))
    said = []
    with runlock.acquire(tmp_path, log=lambda line, **kw: said.append(line)):
        assert json.loads(path.read_text())["slurm_job"] == "77"
    assert len(said) == 1 and "SLURM job 77 was requeued" in said[0]


def test_the_holder_beats_its_heartbeat(tmp_path):
    with runlock.acquire(tmp_path, heartbeat_s=0.05) as held:
        os.utime(held.path, (0, 0))
        time.sleep(0.5)
        assert time.time() - os.stat(held.path).st_mtime < 5


def test_who_trains_a_run_is_read_without_touching_its_lock(tmp_path):
    assert runlock.trainer(tmp_path) is None                      # no lock: nobody
    with runlock.acquire(tmp_path):
        alive, who = runlock.trainer(tmp_path)
        assert alive and who.startswith(f"pid {os.getpid()} on {socket.gethostname()}")
        with pytest.raises(runlock.Held):                         # the query left the lock held
            runlock.acquire(tmp_path)


def test_a_lock_reads_dead_when_its_pid_is_gone_or_its_heartbeat_is_stale(tmp_path):
    lock_file(tmp_path, socket.gethostname(), dead_pid())
    assert runlock.trainer(tmp_path)[0] is False                  # this host: the pid is gone
    lock_file(tmp_path, "gpu-node-7", 4242, age_s=60)
    assert runlock.trainer(tmp_path)[0] is True                   # another host, beating a minute ago
    lock_file(tmp_path, "gpu-node-7", 4242, age_s=3600)
    assert runlock.trainer(tmp_path)[0] is False                  # another host, silent for an hour


@pytest.mark.timeout(170)
def test_two_launches_at_once_one_trains_one_skips_one_history(sweeps, tmp_path):
    sweep = sweeps("twice")
    cmd = [sys.executable, "src/train.py", *TINY, "recipe.epochs=6", f"sweep={sweep}", f"paths.data={tmp_path}"]
    procs = [subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    logs = [p.communicate(timeout=160)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    trained = [log for log in logs if "finished: best top-1" in log]
    skipped = [log for log in logs if "is being trained by pid" in log]
    assert len(trained) == 1 and len(skipped) == 1, logs
    assert "epoch 1/" not in skipped[0]
    done = metrics(run_dir_of(sweep))
    assert done["status"] == "finished" and [r["epoch"] for r in done["history"]] == list(range(6))
    assert not (run_dir_of(sweep) / runlock.LOCK).exists()
