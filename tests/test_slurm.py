"""The SLURM path against a real SLURM: a single-node cluster from Debian's packages on this machine,
a multirun through hydra-submitit-launcher (`hydra/launcher=slurm`), one job preempted mid-training
with SIGUSR2 (what SLURM sends before a time-out or preemption) which must come back through
submitit's checkpoint/requeue and resume from its own checkpoint rather than restart."""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import yaml

from conftest import REPO

sys.path.insert(0, str(REPO / "tests"))
from slurm.cluster import LocalSlurm, SlurmUnavailable  # noqa: E402

pytestmark = pytest.mark.slow
# one local SLURM on this machine at a time: pytest-xdist workers that both reach this module each
# bring one up, one after the other (the cluster owns /etc/slurm/slurm.conf and the node's ports)
CLUSTER_LOCK = Path(tempfile.gettempdir()) / "gmmvit-test-local-slurm.lock"

TINY = ["dataset=digits", "mask=none,gmm", "model.depth=1", "model.embed_dim=32", "model.num_heads=2",
        "recipe.batch_size=32", "recipe.epochs=16", "recipe.warmup_epochs=1", "recipe.passes_per_epoch=1",
        "limit_train=640", "limit_test=128", "threads=1", "workers=0", "logger=none"]
# the preset, sized for this machine: no GPU, one core and 1 GB per job; timeout_min=30 makes
# submitit treat the signal as a preemption (a time-out requeue works the same, counted by max_num_timeout).
# One job at a time: a requeue that met the array's other task completing lost the requeued
# task in this one-node SLURM (3 of 12 runs: no job left, the sweep waiting for ever)
LAUNCHER = ["hydra/launcher=slurm", "hydra.launcher.partition=local", "hydra.launcher.gpus_per_node=null",
            "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=30",
            "hydra.launcher.array_parallelism=1"]


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("bringing up a local SLURM needs root (apt-get install slurm-wlm munge, daemons)")
    with open(CLUSTER_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        cluster = LocalSlurm(tmp_path_factory.mktemp("slurm"))
        try:
            cluster.start()
        except SlurmUnavailable as exc:
            cluster.stop()  # the daemons that did start: left running, no later cluster here comes up
            pytest.skip(f"no local SLURM: {exc}")
        try:
            yield cluster
        finally:
            cluster.stop()


def wait_for(predicate, timeout, proc):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        if proc.poll() is not None:
            return None
        time.sleep(0.2)
    return None


def history_len(run_dir):
    try:
        return len(json.loads((run_dir / "metrics.json").read_text())["history"])
    except (OSError, ValueError, KeyError):
        return 0


def slurm_state(job_id, sweep_dir) -> str:
    """What SLURM and the jobs' logs say, for a failure message."""
    said = [subprocess.run(cmd, capture_output=True, text=True).stdout
            for cmd in (["scontrol", "show", "job", job_id.split("_")[0]], ["squeue", "-a"])]
    logs = sorted((sweep_dir / ".submitit").glob("*/*_log.*"))
    said += [f"--- {p.name}\n{p.read_text()[-1500:]}" for p in logs]
    return "\n".join(said)


# once the job is preempted, until the sweep ends: normally ~15 s; a requeue on a loaded 2-core CI
# machine once took more than 290 s
REQUEUE_BUDGET_S = 360


@pytest.mark.timeout(480)
def test_multirun_on_slurm_with_a_preempted_job_resuming(slurm, tmp_path):
    sweep = f"pytest-slurm-{uuid.uuid4().hex[:8]}"
    sweep_dir = REPO / "multirun" / sweep
    job_ids = set()
    # the driver's output goes to a file, not a pipe: a pipe nobody reads while the test waits fills
    # up (submitit warns on every failed sacct poll) and blocks the driver for good
    driver_log = tmp_path / "driver.log"
    with open(driver_log, "w") as out:
        driver = subprocess.Popen([sys.executable, "src/train.py", "-m", *LAUNCHER, *TINY, f"sweep={sweep}",
                                   f"paths.data={tmp_path}"], cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    try:
        # the GMM job, once it has a checkpoint and is still training
        def target():
            for run_dir in sweep_dir.glob("*mask=gmm*"):
                if (run_dir / "checkpoint.pt").exists() and 1 <= history_len(run_dir) < 5:
                    return run_dir
            return None

        run_dir = wait_for(target, 150, driver)
        assert run_dir is not None, "the job never checkpointed: " + driver_log.read_text()[-3000:]
        job_id = str(yaml.safe_load((run_dir / ".hydra" / "hydra.yaml").read_text())["hydra"]["job"]["id"])
        job_ids.add(job_id)
        epochs_before = history_len(run_dir)

        # preempt it: SIGUSR2 to the job's step, as SLURM does signal_delay_s before a kill
        subprocess.run(["scancel", "--signal=USR2", job_id], check=True, timeout=30)
        # SLURM may hold a requeued job for ~2 minutes (Reason=BeginTime), or put a hold on it: start it
        # as soon as it is back, for as long as the sweep runs
        restarts = set()
        deadline = time.time() + REQUEUE_BUDGET_S
        while driver.poll() is None and time.time() < deadline:
            info = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True).stdout
            restarts.update(int(n) for n in re.findall(r"Restarts=(\d+)", info))
            if "JobState=PENDING" in info:
                for poke in (["scontrol", "release", job_id], ["scontrol", "update", f"JobId={job_id}", "StartTime=now"]):
                    subprocess.run(poke, capture_output=True, timeout=30)
            time.sleep(0.5)
        if driver.poll() is None:
            pytest.fail(f"the sweep did not end within {REQUEUE_BUDGET_S} s of the preemption\n"
                        + slurm_state(job_id, sweep_dir) + "\n--- driver\n" + driver_log.read_text()[-3000:])
        log = driver_log.read_text()
        info = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True).stdout
        restarts.update(int(n) for n in re.findall(r"Restarts=(\d+)", info))
        assert max(restarts, default=0) == 1, f"SLURM did not requeue job {job_id} once: {info}"
        assert driver.returncode == 0, log[-4000:]
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        for job_id in job_ids:
            subprocess.run(["scancel", job_id.split("_")[0]], capture_output=True)

    try:
        runs = {p.name: json.loads((p / "metrics.json").read_text()) for p in sweep_dir.iterdir()
                if (p / "metrics.json").exists()}
        assert len(runs) == 2
        for name, m in runs.items():
            assert m["status"] == "finished", name
            assert [r["epoch"] for r in m["history"]] == list(range(16)), name

        # the preempted job went through submitit's checkpoint -> requeue, then resumed (not restarted)
        job_dir = sweep_dir / ".submitit" / job_id
        err = "".join(p.read_text() for p in job_dir.glob("*_log.err"))
        out = "".join(p.read_text() for p in job_dir.glob("*_log.out"))
        # (submitit's own "Requeued job" line may be cut off: scontrol requeue ends the step at once)
        assert "Caught signal SIGUSR2" in err, err[-3000:]
        assert f"Requeued job {job_id}" in err or "DUE TO JOB REQUEUE" in err, err[-3000:]
        resumed = [int(n) for n in re.findall(rf"resuming {re.escape(run_dir.name)} after epoch (\d+)/", out)]
        # (N may trail the epochs recorded at the signal: a row is written just before its checkpoint)
        assert len(resumed) == 1 and resumed[0] >= 1 and epochs_before >= 1, out[-3000:]
        # the line that ends epoch 1 (progress lines within an epoch name it too)
        assert out.count(f"{run_dir.name} epoch 1/16 loss") == 1, "the job restarted from scratch"
        assert (job_dir / f"{job_id}_0_result.pkl").exists()
    finally:
        shutil.rmtree(sweep_dir, ignore_errors=True)


@pytest.mark.timeout(900)  # its setup may wait for another worker's cluster (CLUSTER_LOCK)
def test_a_fused_sweep_on_slurm_trains_its_group_in_the_first_job_and_the_other_skips(slurm, tmp_path):
    sweep = f"pytest-slurm-fused-{uuid.uuid4().hex[:8]}"
    sweep_dir = REPO / "multirun" / sweep
    tiny = [t if not t.startswith("recipe.epochs") else "recipe.epochs=2" for t in TINY]
    try:
        out = subprocess.run([sys.executable, "src/train.py", "-m", *LAUNCHER, *tiny, "model.pool=mean", "fused=2",
                              f"sweep={sweep}", f"paths.data={tmp_path}"], cwd=REPO, capture_output=True, text=True,
                             timeout=280)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
        runs = {p.name: json.loads((p / "metrics.json").read_text()) for p in sweep_dir.iterdir()
                if (p / "metrics.json").exists()}
        assert len(runs) == 2
        for name, m in runs.items():  # none and gmm, each its own mask, in one model
            assert m["status"] == "finished" and m["paths"]["step"] == "fused x2", name
        logs = "".join(p.read_text() for p in (sweep_dir / ".submitit").glob("*/*_log.out"))
        assert logs.count("trains 2 runs as one model") == 1 and logs.count("already finished") == 1, logs[-3000:]
    finally:
        shutil.rmtree(sweep_dir, ignore_errors=True)
