"""GPU slots: runs started side by side on one machine spread over its GPUs, `runs_per_gpu` to a GPU,
and a slot frees when its run's process ends. The locks are real files and real processes; the GPU
names are stand-ins (no GPU here), as the slot logic only sees names."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from gmmvit.run import devices
from gmmvit.errors import ConfigError

HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from gmmvit.run.devices import claim
    index, handle = claim(sys.argv[2].split(","), int(sys.argv[3]), Path(sys.argv[1]), poll_s=0.05)
    print(index, flush=True)
    if sys.argv[4] == "until-told":
        sys.stdin.readline()
    else:
        time.sleep(float(sys.argv[4]))
""")


def hold(folder, names, per_device, seconds):
    """A process that claims a slot, prints its GPU index and keeps the slot ``seconds`` (or, given
    "until-told", until a line arrives on its stdin)."""
    return subprocess.Popen([sys.executable, "-c", HOLDER, str(folder), ",".join(names), str(per_device),
                             str(seconds)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def test_claims_fill_every_gpus_first_slot_before_any_second(tmp_path):
    held = [devices.try_claim(["gpu-a", "gpu-b"], 2, tmp_path) for _ in range(5)]
    assert [h[0] if h else None for h in held] == [0, 1, 0, 1, None]
    for h in held[:4]:
        h[1].close()


def test_processes_side_by_side_never_share_a_slot(tmp_path):
    procs = [hold(tmp_path, ["gpu-a", "gpu-b"], 2, 3) for _ in range(4)]
    indices = sorted(int(p.stdout.readline()) for p in procs)
    assert indices == [0, 0, 1, 1]
    assert devices.try_claim(["gpu-a", "gpu-b"], 2, tmp_path) is None
    for p in procs:
        p.kill()
        p.wait()


def test_a_slot_frees_when_its_process_ends_however_it_ends(tmp_path):
    proc = hold(tmp_path, ["gpu-a"], 1, 60)
    assert proc.stdout.readline().strip() == "0"
    assert devices.try_claim(["gpu-a"], 1, tmp_path) is None
    proc.kill()  # no cleanup code runs: the kernel drops the lock
    proc.wait()
    got = devices.try_claim(["gpu-a"], 1, tmp_path)
    assert got is not None and got[0] == 0
    got[1].close()


def test_a_run_waits_for_a_busy_gpu_says_so_then_takes_it(tmp_path):
    first = hold(tmp_path, ["gpu-a"], 1, "until-told")
    assert first.stdout.readline().strip() == "0"
    second = hold(tmp_path, ["gpu-a"], 1, 0)
    assert "waiting for one to free" in second.stdout.readline()
    first.communicate("go\n", timeout=10)  # the first run ends and frees its slot
    assert second.stdout.readline().strip() == "0"
    second.wait(timeout=10)


def test_slots_are_per_gpu_name_so_jobs_seeing_different_gpus_never_wait(tmp_path):
    a = devices.try_claim(["GPU-uuid-1"], 1, tmp_path)
    b = devices.try_claim(["GPU-uuid-2"], 1, tmp_path)  # another job whose cuda:0 is another GPU
    assert a is not None and b is not None
    a[1].close()
    b[1].close()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only machine's answers")
def test_without_a_gpu_auto_is_the_cpu_and_the_machine_runs_runs_per_gpu_at_once():
    assert devices.pick_device("auto", 2) == torch.device("cpu")
    assert devices.gpu_slots(1) == 1 and devices.gpu_slots(3) == 3
    assert devices.loader_workers("auto", torch.device("cpu")) == 0


def test_an_explicit_device_is_taken_as_is():
    assert devices.pick_device("cpu") == torch.device("cpu")
    assert devices.loader_workers(3, torch.device("cpu")) == 3


@pytest.mark.parametrize("bad", [0, -1, 1.5, "two", True])
def test_runs_per_gpu_must_be_a_whole_number_of_at_least_one(bad):
    with pytest.raises(ConfigError, match="runs_per_gpu"):
        devices.pick_device("cpu", bad)
