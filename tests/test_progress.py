"""What a user watches: a bar on a terminal, a line every ~10% of an epoch in a log, job k/n of a
multirun, and `make status`."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import statistics

import pytest

from conftest import compose_cfg
from gmmvit.run import progress
from gmmvit.sweeps import status
from gmmvit.run.progress import Progress, duration, is_terminal
from gmmvit.catalog import MULTIRUN
from gmmvit.sweeps.status import sweep_name, sweep_status
from gmmvit.sweeps.folders import collect
from gmmvit.run.train import train


class CountingLoss:
    """A loss sum that counts how often it is read on the host (float())."""

    def __init__(self):
        self.reads = 0

    def __float__(self):
        self.reads += 1
        return 2.5


def run_epochs(p: Progress, epochs: int, steps: int, loss) -> None:
    for epoch in range(epochs):
        p.start_epoch(epoch)
        for i in range(steps):
            p.step(8 * (i + 1), loss)


def test_log_prints_a_line_every_tenth_of_an_epoch_and_reads_the_loss_only_then():
    out, loss = io.StringIO(), CountingLoss()
    run_epochs(Progress("run", epochs=2, steps_per_epoch=100, stream=out), 2, 100, loss)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 * 9 and loss.reads == 2 * 9
    assert [re.search(r"(\d+)% \((\d+)/100 steps\)", line).groups() for line in lines[:9]] == \
        [(str(10 * k), str(10 * k)) for k in range(1, 10)]
    assert all(re.search(r"loss \d+\.\d{4} \d+ img/s ETA \S+$", line) for line in lines)
    assert lines[0].startswith("[gmmvit] run epoch 1/2") and lines[9].startswith("[gmmvit] run epoch 2/2")


def test_short_epochs_print_no_step_lines():
    out = io.StringIO()
    run_epochs(Progress("run", epochs=1, steps_per_epoch=19, stream=out), 1, 19, CountingLoss())
    assert out.getvalue() == ""


def test_terminal_bar_shows_steps_img_per_s_loss_and_eta_reading_the_loss_at_most_once_a_second():
    out, loss = io.StringIO(), CountingLoss()
    p = Progress("run", epochs=3, steps_per_epoch=50, stream=out, bar=True)
    p.start_epoch(0)
    for i in range(49):
        p.step(8 * (i + 1), loss)
    shown = str(p.bar)                           # what the terminal line shows now
    assert "49/50" in shown and "step/s" in shown and shown.startswith("run 1/3")
    assert re.search(r"loss \d+\.\d{4} \d+ img/s ETA \S+", shown)
    assert loss.reads == 1                       # 49 fast steps: one read, not one per step
    p.step(8 * 50, loss)
    assert p.bar is None and "run 1/3" in out.getvalue()    # closed with the epoch's last step


def test_a_bar_only_on_a_terminal():
    assert not is_terminal(io.StringIO())
    leader, follower = os.openpty()
    try:
        with os.fdopen(follower, "w", closefd=False) as tty:
            assert is_terminal(tty)
    finally:
        os.close(leader)
        os.close(follower)


def test_eta_is_this_epochs_rest_plus_the_epochs_left_at_the_last_epochs_length(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    p = Progress("run", epochs=4, steps_per_epoch=10, stream=io.StringIO())
    p.start_epoch(0)
    for _ in range(10):
        clock[0] += 1.0                          # 1 s a step
        p.step(8, 1.0)
    clock[0] += 5.0                              # evaluation and checkpoint: 5 s
    p.start_epoch(1)
    for _ in range(4):
        clock[0] += 1.0
        p.step(8, 1.0)
    # 6 steps left (6 s) + evaluation (5 s) + 2 more epochs of 15 s
    assert p.eta_s(clock[0]) == pytest.approx(6 + 5 + 2 * 15)
    assert progress.duration(41) == "41s" and progress.duration(3725) == "1h02m"


def test_a_training_run_logs_tenths_of_its_epochs(tmp_path, data_dir, capsys):
    cfg = compose_cfg(["dataset=digits", "model.depth=1", "model.embed_dim=32", "model.num_heads=2",
                       "recipe.batch_size=16", "recipe.epochs=1", "recipe.warmup_epochs=0", "recipe.passes_per_epoch=1",
                       "limit_train=320", "limit_test=64", "threads=1", "logger=none"], run_dir=tmp_path / "run",
                      data_dir=data_dir)
    train(cfg)
    out = capsys.readouterr().out.splitlines()
    tenths = [line for line in out if re.search(r"epoch 1/1 +\d+% \(\d+/20 steps\)", line)]
    assert len(tenths) == 9
    assert any("epoch 1/1 loss" in line for line in out)      # then the epoch's own line


def test_multirun_jobs_say_which_of_how_many_by_their_folder_and_log_tenths(offline_sweep):
    sweep_dir, stdout = offline_sweep
    assert re.findall(r"\[gmmvit\] job (\d+/\d+): ", stdout) == ["1/4", "2/4", "3/4", "4/4"]
    named = re.findall(r"\[gmmvit\] job \d+/\d+: (\S+)", stdout)
    assert sorted(named) == sorted(p.name for p in sweep_dir.iterdir() if (p / "metrics.json").exists())
    assert len(re.findall(r"epoch \d/2 +\d+% \(\d+/20 steps\)", stdout)) == 4 * 2 * 9


def test_status_gives_each_runs_epochs_and_eta_and_the_sweeps(offline_sweep, tmp_path):
    sweep_dir, _ = offline_sweep
    copy = tmp_path / "dashtest"
    shutil.copytree(sweep_dir, copy, ignore=shutil.ignore_patterns("wandb", "*.pt"))
    runs = sorted(p for p in copy.iterdir() if (p / "metrics.json").exists())
    running = runs[0] / "metrics.json"           # one run half way: status running, 1 of 2 epochs
    m = json.loads(running.read_text())
    m.update(status="running", history=m["history"][:1])
    m["history"][0]["epoch_s"] = 30.0
    running.write_text(json.dumps(m))
    shutil.rmtree(runs[1])                       # and one not started yet
    [(folder, found)] = collect([copy]).items()
    text = sweep_status(folder, found)
    assert "4 runs (1 not started yet)" in text
    assert "running 1/2 epochs, ETA 30s" in text
    assert "2 finished, 1 running, 1 todo; sweep ETA" in text
    assert status.main([str(sweep_dir)]) == 0


def test_status_counts_as_not_started_the_latest_multiruns_jobs_that_have_no_run_folder(offline_sweep, tmp_path):
    """A later multirun into the same sweep folder (two more seeds) rewrites multirun.yaml: its jobs
    are not started until their folders exist, however many runs earlier multiruns left there."""
    sweep_dir, _ = offline_sweep
    copy = tmp_path / "dashtest"
    shutil.copytree(sweep_dir, copy, ignore=shutil.ignore_patterns("wandb", "*.pt"))
    saved = (copy / "multirun.yaml").read_text()
    assert "- seed=0,1\n" in saved
    (copy / "multirun.yaml").write_text(saved.replace("- seed=0,1\n", "- seed=2,3\n"))
    [(folder, found)] = collect([copy]).items()
    text = sweep_status(folder, found)
    assert "8 runs (4 not started yet)" in text
    assert "4 finished, 4 todo; sweep ETA" in text and "sweep finished" not in text


def test_status_of_a_stopped_sweep_says_its_eta_counts_from_a_relaunch(tmp_path):
    sweep = tmp_path / "stopped"
    for name, status_, history in (("mask=none", "finished", [{"epoch": 0, "test_top1": 50.0, "epoch_s": 60.0}]),
                                   ("mask=gmm", "stopped", [])):
        (sweep / name).mkdir(parents=True)
        (sweep / name / "metrics.json").write_text(json.dumps({"status": status_, "epochs": 1, "history": history}))
    [(folder, found)] = collect([sweep]).items()
    text = sweep_status(folder, found)
    assert text.splitlines()[0] == f"stopped ({sweep}): 2 runs"
    assert text.splitlines()[-1] == "1 finished, 1 stopped; sweep ETA 1m00s once relaunched, one run at a time " \
        "(none is running now)"
    shutil.rmtree(sweep / "mask=gmm")
    assert sweep_status(folder, collect([sweep])[folder]).splitlines()[0] == f"stopped ({sweep}): 1 run"


def test_status_of_a_stopped_fused_sweep_counts_its_eta_at_g_runs_at_a_time_as_it_was_launched(offline_sweep,
                                                                                                  tmp_path):
    sweep_dir, _ = offline_sweep
    copy = tmp_path / "dashtest"
    shutil.copytree(sweep_dir, copy, ignore=shutil.ignore_patterns("wandb", "*.pt"))
    runs = sorted(p for p in copy.iterdir() if (p / "metrics.json").exists())
    for run in runs[:2]:
        shutil.rmtree(run)                       # two runs not started, nothing running
    kept = [json.loads((run / "metrics.json").read_text()) for run in runs[2:]]
    typical = statistics.median(m["epochs"] * statistics.median(r["epoch_s"] for r in m["history"]) for m in kept)
    assert f"sweep ETA {duration(2 * typical)} once relaunched, one run at a time (none is running now)\n" in \
        sweep_status(*collect([copy]).popitem())
    saved = (copy / "multirun.yaml").read_text()
    (copy / "multirun.yaml").write_text(saved.replace("- seed=0,1\n", "- seed=0,1\n    - fused=2\n", 1))
    text = sweep_status(*collect([copy]).popitem())
    assert f"sweep ETA {duration(typical)} once relaunched, 2 runs at a time (fused=2, as launched) " \
        "(none is running now)\n" in text


def test_status_names_a_nested_sweep_as_it_was_launched(tmp_path):
    assert sweep_name(MULTIRUN / "ablation" / "pooling") == "ablation/pooling"
    assert sweep_name(tmp_path / "copied") == "copied"


def test_the_finished_line_counts_the_best_epoch_as_the_epoch_lines_do(offline_sweep):
    sweep_dir, stdout = offline_sweep
    for run in (p for p in sweep_dir.iterdir() if (p / "metrics.json").exists()):
        final = json.loads((run / "metrics.json").read_text())["final"]
        shown = f"epoch {final['best_epoch'] + 1}/2"             # metrics.json keeps the index from 0
        assert f"{run.name} finished: best top-1 {final['best_top1']:.2f} ({shown})" in stdout
        assert re.search(rf"{re.escape(run.name)} {shown} loss \S+ top-1 {final['best_top1']:.2f} ", stdout)


def test_a_run_folder_holds_no_empty_log_file(offline_sweep):
    sweep_dir, _ = offline_sweep
    assert not list(sweep_dir.glob("*/*.log"))
