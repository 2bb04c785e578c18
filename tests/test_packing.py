"""The packing measurement (gmmvit.bench.packing): processes meet on a barrier after their warm-up,
and the rate is every process's images over one common window."""

from __future__ import annotations

import pytest

from gmmvit.bench import packing

TINY = ["model=vit", "mask=gmm", "dataset=digits", "model.depth=1", "model.embed_dim=32", "model.num_heads=2",
        "recipe.batch_size=8"]


def test_packed_workers_start_timing_only_after_all_of_them_warmed_up():
    r = packing.measure(2, TINY, steps=2, warmup=1, device="cpu", images=64, threads=1, timeout_s=240)
    assert "error" not in r, r.get("error")
    starts, arrivals = [w["start"] for w in r["results"]], [w["arrived"] for w in r["results"]]
    assert min(starts) >= max(arrivals)  # nobody's timed steps began before the last one arrived
    assert r["images"] == 2 * 2 * 8 and sorted(w["rank"] for w in r["results"]) == [0, 1]


def test_a_worker_whose_images_make_no_full_batch_says_so_instead_of_waiting_forever():
    r = packing.measure(1, TINY, steps=2, warmup=1, device="cpu", images=4, threads=1, timeout_s=240)
    assert "4 images make no full batch of 8" in r["error"]


def test_packed_rate_is_all_images_over_the_window_from_first_start_to_last_end():
    results = [{"start": 10.0, "end": 14.0, "images": 400}, {"start": 11.0, "end": 16.0, "images": 600}]
    r = packing.aggregate(results)
    assert r["window_s"] == 6.0 and r["img_s"] == pytest.approx(1000 / 6.0)
    assert r["overlap_s"] == 3.0 and r["each_img_s"] == [100.0, 120.0]


def test_barrier_names_how_many_arrived_when_it_times_out(tmp_path):
    with pytest.raises(TimeoutError, match="2 parties expected, 1 arrived"):
        packing.FileBarrier(tmp_path, 2, timeout_s=0.0).wait(0)


def test_mps_reads_running_from_its_control_pipe(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_MPS_PIPE_DIRECTORY", str(tmp_path))
    (tmp_path / "control").touch()
    assert packing.mps_state().startswith("running")


@pytest.mark.parametrize("argv, says", [
    (["--sizes", "1,x"], "argument --sizes: '1,x': give sizes as whole numbers >= 1"),
    (["--device", "cpu", "--steps", "0"], "argument --steps: '0': give a whole number >= 1"),
    (["--device", "gpu"], "argument --device: 'gpu': give auto, cpu, cuda or cuda:N"),
    (["--device", "cpu", "--step-graph", "maybe"], "argument --step-graph: invalid choice: 'maybe'"),
    (["--device", "cpu", "model=vitt"], "model=vitt: model takes one of"),
])
def test_a_packing_flag_or_override_it_cannot_take_is_one_line_and_exit_2_before_any_process_starts(
        capsys, argv, says):
    with pytest.raises(SystemExit) as stop:
        packing.main(argv)
    out = capsys.readouterr()
    assert stop.value.code == 2 and len(out.err.strip().splitlines()) == 1
    assert says in out.err and "MPS" not in out.out


def stand_in_mps_control(folder, exit_code=0):
    """An executable named as NVIDIA's MPS control (which no CPU machine has): it logs each call's
    arguments, stdin and pipe folder, then exits ``exit_code``."""
    log = folder / "calls.log"
    script = folder / packing.MPS_CONTROL
    script.write_text(f"#!/bin/sh\necho \"args=$* pipe=$CUDA_MPS_PIPE_DIRECTORY stdin=$(cat -)\" >> {log}\n"
                      f"[ {exit_code} = 0 ] || echo 'daemon refused: no GPU' >&2\nexit {exit_code}\n")
    script.chmod(0o755)
    return log


def test_without_nvidias_mps_control_no_daemon_is_started_and_the_report_says_why(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with packing.own_mps_daemon() as (env, state):
        assert env is None and state == "not started: no nvidia-cuda-mps-control on this machine"


def test_the_checks_own_mps_daemon_has_a_private_pipe_and_is_quit_when_its_block_fails(tmp_path, monkeypatch):
    log = stand_in_mps_control(tmp_path)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    with pytest.raises(RuntimeError), packing.own_mps_daemon() as (env, state):
        assert state.startswith("started for these processes") and "gmmvit-mps-" in env["CUDA_MPS_PIPE_DIRECTORY"]
        raise RuntimeError("a packed measurement failed")
    started, quit_ = log.read_text().splitlines()
    assert started.startswith("args=-d pipe=" + env["CUDA_MPS_PIPE_DIRECTORY"])
    assert quit_ == f"args= pipe={env['CUDA_MPS_PIPE_DIRECTORY']} stdin=quit"


def test_an_mps_daemon_that_will_not_start_is_reported_with_its_reason(tmp_path, monkeypatch):
    stand_in_mps_control(tmp_path, exit_code=1)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    with packing.own_mps_daemon() as (env, state):
        assert env is None and state == "not started: nvidia-cuda-mps-control -d: daemon refused: no GPU"
