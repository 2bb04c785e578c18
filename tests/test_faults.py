"""Faults and bad input: a diverging run fails alone, corrupt checkpoints fall back or stop with one
line, and every bad input ends with one line (no traceback) and a non-zero exit before training."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid

import pytest

from conftest import REPO
from gmmvit.errors import CheckpointError
from gmmvit.run import train as train_mod
from gmmvit.run.records import CHECKPOINT, PREVIOUS_CHECKPOINT

TINY = ["dataset=digits", "model.depth=1", "model.embed_dim=32", "model.num_heads=2", "recipe.batch_size=32",
        "recipe.warmup_epochs=0", "recipe.passes_per_epoch=1", "limit_train=128", "limit_test=64",
        "threads=1", "workers=0", "logger=none"]


def run_cli(args, **kw):
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return subprocess.run([sys.executable, "src/train.py", *args], cwd=REPO, capture_output=True, text=True,
                          env=env, timeout=180, **kw)


def one_line_error(out):
    assert out.returncode != 0, out.stdout[-2000:]
    assert "Traceback" not in out.stderr, out.stderr
    assert "epoch 1/" not in out.stdout, "training started before the error"
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert lines, "no error message"
    return lines


# --- NaN / Inf ------------------------------------------------------------------------------------

@pytest.mark.timeout(170)
def test_a_diverging_run_fails_with_its_reason_and_the_sweep_goes_on(tmp_path):
    sweep = f"pytest-nan-{uuid.uuid4().hex[:8]}"
    try:
        out = run_cli(["-m", *TINY, "recipe.epochs=2", f"sweep={sweep}", f"paths.data={tmp_path}",
                       "recipe.optimizer.lr=1e-3,1e30"])
        assert out.returncode == 0, out.stderr[-3000:]
        runs = {}
        for run_dir in (REPO / "multirun" / sweep).iterdir():
            if (run_dir / "metrics.json").exists():
                runs[run_dir.name] = json.loads((run_dir / "metrics.json").read_text())
        assert len(runs) == 2, list(runs)
        good = next(m for name, m in runs.items() if "lr=0.001" in name)
        bad = next(m for name, m in runs.items() if "lr=0.001" not in name)
        assert good["status"] == "finished" and len(good["history"]) == 2
        assert bad["status"] == "failed"
        assert "loss became" in bad["reason"] and ("nan" in bad["reason"] or "inf" in bad["reason"])
        assert "failed: loss became" in out.stdout
    finally:
        shutil.rmtree(REPO / "multirun" / sweep, ignore_errors=True)


# --- corrupt checkpoints --------------------------------------------------------------------------

class Killed(BaseException):
    """Stands for a kill right after a checkpoint was written."""


def interrupted_run(compose_config, run_dir, data_dir, monkeypatch, after_checkpoints=2):
    """Three-epoch run stopped right after its 2nd checkpoint: checkpoint.pt (epoch 2), .prev (epoch 1)."""
    cfg = compose_config(["mask=gmm", *TINY, "recipe.epochs=3"], run_dir=run_dir, data_dir=data_dir)
    saved = []
    real_save = train_mod.save_checkpoint

    def save_then_die(path, state):
        real_save(path, state)
        saved.append(state["epoch"])
        if len(saved) == after_checkpoints:
            raise Killed

    monkeypatch.setattr(train_mod, "save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        train_mod.train(cfg)
    monkeypatch.setattr(train_mod, "save_checkpoint", real_save)
    return cfg


def history_kept_and_failed_with(run_dir, before, error_line):
    """The refused relaunch kept every recorded epoch and says why the run stands still."""
    after = json.loads((run_dir / "metrics.json").read_text())
    assert after["history"] == before["history"] and after["final"] == before["final"]
    assert after["status"] == "failed" and after["reason"].split(": ", 1)[1] in error_line


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


@pytest.mark.timeout(120)
def test_corrupt_last_checkpoint_resumes_from_the_previous_one(compose_config, tmp_path, data_dir, monkeypatch,
                                                              capsys):
    run_dir = tmp_path / "run"
    cfg = interrupted_run(compose_config, run_dir, data_dir, monkeypatch)
    assert [r["epoch"] for r in json.loads((run_dir / "metrics.json").read_text())["history"]] == [0, 1]
    truncate(run_dir / CHECKPOINT)
    result = train_mod.train(cfg)
    log = capsys.readouterr().out
    assert "unreadable" in log and f"resuming {run_dir.name} after epoch 1/3" in log
    assert result["status"] == "finished"
    assert [r["epoch"] for r in result["history"]] == [0, 1, 2]


@pytest.mark.timeout(120)
def test_every_checkpoint_corrupt_is_one_line_error_and_leaves_metrics_alone(compose_config, tmp_path, data_dir,
                                                                            monkeypatch):
    run_dir = tmp_path / "run"
    interrupted_run(compose_config, run_dir, data_dir, monkeypatch)
    truncate(run_dir / CHECKPOINT)
    (run_dir / PREVIOUS_CHECKPOINT).write_bytes(b"not a checkpoint")
    before = json.loads((run_dir / "metrics.json").read_text())
    out = run_cli(["mask=gmm", *TINY, "recipe.epochs=3", f"paths.data={data_dir}", f"hydra.run.dir={run_dir}"])
    lines = one_line_error(out)
    assert lines[-1].startswith("gmmvit: error:") and "corrupt" in lines[-1] and "delete" in lines[-1]
    history_kept_and_failed_with(run_dir, before, lines[-1])


@pytest.mark.timeout(120)
def test_history_without_any_checkpoint_is_not_silently_restarted(compose_config, tmp_path, data_dir,
                                                                  monkeypatch):
    run_dir = tmp_path / "run"
    interrupted_run(compose_config, run_dir, data_dir, monkeypatch)
    (run_dir / CHECKPOINT).unlink()
    (run_dir / PREVIOUS_CHECKPOINT).unlink()
    before = json.loads((run_dir / "metrics.json").read_text())
    out = run_cli(["mask=gmm", *TINY, "recipe.epochs=3", f"paths.data={data_dir}", f"hydra.run.dir={run_dir}"])
    lines = one_line_error(out)
    assert "no checkpoint" in lines[-1]
    history_kept_and_failed_with(run_dir, before, lines[-1])


def test_a_failed_run_that_fails_again_for_another_reason_records_the_new_reason(compose_config, tmp_path, data_dir,
                                                                                  monkeypatch):
    run_dir = tmp_path / "run"
    cfg = interrupted_run(compose_config, run_dir, data_dir, monkeypatch)
    truncate(run_dir / CHECKPOINT)
    (run_dir / PREVIOUS_CHECKPOINT).write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError) as first:
        train_mod.train(cfg)
    assert "corrupt" in json.loads((run_dir / "metrics.json").read_text())["reason"]
    (run_dir / CHECKPOINT).unlink()
    (run_dir / PREVIOUS_CHECKPOINT).unlink()
    with pytest.raises(CheckpointError) as second:
        train_mod.train(cfg)  # the relaunch of a failed run, failing for another reason
    assert "no checkpoint" in str(second.value) and str(second.value) != str(first.value)
    after = json.loads((run_dir / "metrics.json").read_text())
    assert after["status"] == "failed" and after["reason"].split(": ", 1)[1] in str(second.value)


# --- bad input ------------------------------------------------------------------------------------

BAD_INPUT = {
    "unknown model": (["model=nosuchmodel"], "model=nosuchmodel: model takes one of cait, pit, swin, t2t, vit"),
    "unknown mask": (["mask=nosuchmask"], "mask=nosuchmask: mask takes one of elm, gmm, none"),
    "unknown dataset": (["dataset=nosuchdata"], "dataset=nosuchdata: dataset takes one of cifar10, cifar100, digits, "
                                                "fashion_mnist, svhn, tinyimagenet"),
    "image size the model cannot take": (["dataset.img_size=30"], "cannot take 30px"),
    "missing dataset, no network": (["dataset=cifar10", "paths.data={empty}"], "dataset cifar10 is not in"),
    "unwritable output folder (run)": (["hydra.run.dir={file}/run"], "is not writable"),
    "unwritable output folder (sweep)": (["-m", "hydra.sweep.dir={file}/sweep"], "is not writable"),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_one_line_before_training(case, tmp_path, data_dir):
    extra, expected = BAD_INPUT[case]
    (tmp_path / "empty").mkdir()
    (tmp_path / "a_file").write_text("")
    fill = dict(empty=tmp_path / "empty", file=tmp_path / "a_file")
    extra = [e.format(**fill) for e in extra]
    flags = [e for e in extra if e.startswith("-")]
    overrides = [e for e in extra if not e.startswith("-")]
    args = [*flags, *TINY, "recipe.epochs=1", f"paths.data={data_dir}", f"hydra.run.dir={tmp_path}/out",
            f"hydra.sweep.dir={tmp_path}/sweep_out", *overrides]
    out = run_cli(args)
    lines = one_line_error(out)
    assert expected in out.stderr, out.stderr
    assert len(lines) == 1 and lines[0].startswith("gmmvit: error:") and out.returncode == 2, out.stderr
    assert not (tmp_path / "empty" / "cifar10" / "cifar-10-batches-py").exists()
