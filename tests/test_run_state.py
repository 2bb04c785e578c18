"""A run's state is true the moment its trainer ends: Ctrl-C and SIGTERM record ``stopped`` and say
so in one line, an exception records ``failed`` with its reason, and the readers report both at once;
a killed trainer's half-written files are removed when the run starts again; the files a run writes
are as readable as the user's umask makes any file."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time

import pytest

from conftest import REPO
from gmmvit.run import train as train_mod
from gmmvit.run.records import write_json
from gmmvit.sweeps.folders import read_run

TINY = ["dataset=digits", "mask=gmm", "model.depth=1", "model.embed_dim=32", "model.num_heads=2",
        "recipe.batch_size=32", "recipe.warmup_epochs=0", "recipe.passes_per_epoch=1", "limit_train=128",
        "limit_test=64", "threads=1", "workers=0", "logger=none"]


def metrics(run_dir):
    return json.loads((run_dir / "metrics.json").read_text())


def stop_after_first_checkpoint(monkeypatch, stop):
    real_save = train_mod.save_checkpoint

    def save_then_stop(path, state):
        real_save(path, state)
        stop()

    monkeypatch.setattr(train_mod, "save_checkpoint", save_then_stop)


def ctrl_c():
    raise KeyboardInterrupt


@pytest.mark.timeout(120)
def test_ctrl_c_records_stopped_and_exits_130_with_one_line(compose_config, tmp_path, data_dir, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    cfg = compose_config([*TINY, "recipe.epochs=3"], run_dir=run_dir, data_dir=data_dir)
    stop_after_first_checkpoint(monkeypatch, ctrl_c)
    with pytest.raises(SystemExit) as ended:
        train_mod.train(cfg)
    assert ended.value.code == 130
    assert f"[gmmvit] {run_dir.name} stopped at epoch 1/3; relaunch to resume" in capsys.readouterr().out
    assert metrics(run_dir)["status"] == "stopped" and metrics(run_dir)["reason"] == "Ctrl-C at epoch 1/3"
    assert not (run_dir / "trainer.lock").exists()
    assert read_run(run_dir).state == "stopped"


@pytest.fixture
def terminal_ctrl_c():
    """Ctrl-C as a process on a terminal takes it (a pytest-xdist worker ignores SIGINT)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def signal_during_first_checkpoint(monkeypatch, times):
    real_save = train_mod.save_checkpoint

    def signalled_save(path, state):
        for _ in range(times):
            os.kill(os.getpid(), signal.SIGINT)
        real_save(path, state)

    monkeypatch.setattr(train_mod, "save_checkpoint", signalled_save)


@pytest.mark.timeout(120)
def test_ctrl_c_while_an_epoch_is_written_waits_for_its_checkpoint(compose_config, tmp_path, data_dir,
                                                                     monkeypatch, capsys, terminal_ctrl_c):
    run_dir = tmp_path / "run"
    cfg = compose_config([*TINY, "recipe.epochs=3"], run_dir=run_dir, data_dir=data_dir)
    signal_during_first_checkpoint(monkeypatch, times=1)
    with pytest.raises(SystemExit) as ended:
        train_mod.train(cfg)
    assert ended.value.code == 130
    assert "stopped at epoch 1/3; relaunch to resume" in capsys.readouterr().out
    assert len(metrics(run_dir)["history"]) == 1
    assert train_mod.load_checkpoint(run_dir)["epoch"] == 1
    assert (run_dir / "best.pt").exists()


@pytest.mark.timeout(120)
def test_ctrl_c_while_an_epoch_is_written_still_prints_the_line_of_the_epoch_it_recorded(
        compose_config, tmp_path, data_dir, monkeypatch, capsys, terminal_ctrl_c):
    run_dir = tmp_path / "run"
    cfg = compose_config([*TINY, "recipe.epochs=3"], run_dir=run_dir, data_dir=data_dir)
    signal_during_first_checkpoint(monkeypatch, times=1)
    with pytest.raises(SystemExit):
        train_mod.train(cfg)
    out = capsys.readouterr().out
    [row] = metrics(run_dir)["history"]
    epoch_line = f"{run_dir.name} epoch 1/3 loss {row['train_loss']:.4f} top-1 {row['test_top1']:.2f} "
    assert epoch_line in out and out.index(epoch_line) < out.index("stopped at epoch 1/3")


@pytest.mark.timeout(120)
def test_a_second_ctrl_c_while_an_epoch_is_written_stops_at_once(compose_config, tmp_path, data_dir, monkeypatch,
                                                                 terminal_ctrl_c):
    run_dir = tmp_path / "run"
    cfg = compose_config([*TINY, "recipe.epochs=3"], run_dir=run_dir, data_dir=data_dir)
    signal_during_first_checkpoint(monkeypatch, times=2)
    with pytest.raises(SystemExit) as ended:
        train_mod.train(cfg)
    assert ended.value.code == 130
    assert train_mod.load_checkpoint(run_dir) is None
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def server_gone(ds):
    """``load_splits`` when the data cannot be read: an exception whose message spans two lines."""
    raise RuntimeError("the data\nserver went away")


@pytest.mark.timeout(120)
def test_an_exception_records_failed_with_its_reason(compose_config, tmp_path, data_dir, monkeypatch):
    run_dir = tmp_path / "run"
    cfg = compose_config([*TINY, "recipe.epochs=1"], run_dir=run_dir, data_dir=data_dir)
    monkeypatch.setattr(train_mod, "load_splits", server_gone)
    with pytest.raises(RuntimeError):
        train_mod.train(cfg)
    assert metrics(run_dir)["status"] == "failed"
    assert metrics(run_dir)["reason"] == "RuntimeError: the data server went away"
    run = read_run(run_dir)
    assert run.state == "failed" and run.reason == "RuntimeError: the data server went away"


@pytest.mark.timeout(120)
def test_a_failed_run_relaunched_and_stopped_before_it_trains_records_the_stop(compose_config, tmp_path, data_dir,
                                                                              monkeypatch):
    run_dir = tmp_path / "run"
    cfg = compose_config([*TINY, "recipe.epochs=1"], run_dir=run_dir, data_dir=data_dir)
    monkeypatch.setattr(train_mod, "load_splits", server_gone)
    with pytest.raises(RuntimeError):
        train_mod.train(cfg)
    monkeypatch.setattr(train_mod, "load_splits", lambda ds: ctrl_c())  # Ctrl-C while the relaunch reads its data
    with pytest.raises(SystemExit):
        train_mod.train(cfg)
    assert metrics(run_dir)["status"] == "stopped" and metrics(run_dir)["reason"] == "Ctrl-C at epoch 0/1"
    assert read_run(run_dir).state == "stopped"


def test_a_stopped_record_reads_as_stopped_at_once_however_fresh(tmp_path):
    write_json(tmp_path / "metrics.json", {"status": "stopped", "reason": "SIGTERM at epoch 1/3", "epochs": 3,
                                          "history": [{"epoch": 0, "test_top1": 10.0}], "final": {}})
    assert read_run(tmp_path, now=time.time()).state == "stopped"


@pytest.mark.timeout(120)
def test_half_written_temporary_files_of_a_killed_trainer_are_removed_at_start(compose_config, tmp_path, data_dir):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    leftovers = [run_dir / ".checkpoint.pt.k1ll3d.tmp", run_dir / ".metrics.json.k1ll3d.tmp"]
    for path in leftovers:
        path.write_bytes(b"half a file")
    train_mod.train(compose_config([*TINY, "recipe.epochs=1"], run_dir=run_dir, data_dir=data_dir))
    assert not any(path.exists() for path in leftovers)
    assert metrics(run_dir)["status"] == "finished"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o002, 0o664)])
def test_a_runs_files_get_the_mode_a_plain_open_gives_under_the_umask(compose_config, tmp_path, data_dir, umask,
                                                                      mask, mode):
    umask(mask)
    run_dir = tmp_path / "run"
    train_mod.train(compose_config([*TINY, "recipe.epochs=2"], run_dir=run_dir, data_dir=data_dir))
    written = ["metrics.json", "checkpoint.pt", "checkpoint.prev.pt", "best.pt", "config.yaml"]
    assert {name: oct(stat.S_IMODE((run_dir / name).stat().st_mode)) for name in written} == \
        {name: oct(mode) for name in written}


def training_process(run_dir, data_dir, epochs):
    """``python src/train.py`` training the tiny run into ``run_dir``, its output read through pipes."""
    return subprocess.Popen([sys.executable, "src/train.py", *TINY, f"recipe.epochs={epochs}", f"paths.data={data_dir}",
                             f"hydra.run.dir={run_dir}"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))


@pytest.mark.timeout(150)
def test_sigterm_mid_run_records_stopped_prints_one_line_and_exits_143(tmp_path, data_dir):
    run_dir = tmp_path / "run"
    proc = training_process(run_dir, data_dir, epochs=50)
    deadline = time.time() + 120
    while not (run_dir / "checkpoint.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err[-3000:]
    assert "Traceback" not in err, err
    done = metrics(run_dir)
    assert done["status"] == "stopped" and done["reason"].startswith("SIGTERM at epoch ")
    k = len(done["history"])
    assert f"stopped at epoch {k}/50; relaunch to resume" in out
    assert read_run(run_dir).state == "stopped"


def test_make_clean_removes_caches_and_never_a_run(tmp_path):
    shutil.copy(REPO / "Makefile", tmp_path / "Makefile")
    run_dir = tmp_path / "multirun" / "paper" / "model=vit,mask=gmm"
    single = tmp_path / "multirun" / "default" / "seed=1"
    for folder in (run_dir, single):
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text("{}")
    caches = [tmp_path / "outputs" / "2026-12-03", tmp_path / "src" / "gmmvit" / "__pycache__", tmp_path / ".pytest_cache"]
    for cache in caches:
        cache.mkdir(parents=True)
    out = subprocess.run(["make", "clean"], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert (run_dir / "metrics.json").is_file() and (single / "metrics.json").is_file()
    assert not any(cache.exists() for cache in caches)


@pytest.mark.timeout(150)
def test_a_run_whose_output_reader_leaves_trains_on_to_the_end(tmp_path, data_dir):
    run_dir = tmp_path / "run"
    proc = training_process(run_dir, data_dir, epochs=3)
    proc.stdout.readline()               # what `| head -1` reads before it leaves
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 0, err[-3000:]
    assert metrics(run_dir)["status"] == "finished" and len(metrics(run_dir)["history"]) == 3
