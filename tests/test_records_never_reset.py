"""A run's record is never silently reset: metrics.json is read against its schema, and one that is
unreadable, of the wrong shape, or shorter than its checkpoint is rebuilt from the history the
checkpoint carries (one line) or refused in one line naming the file and the fix, its bytes kept."""

from __future__ import annotations

import json

import pytest
import torch

from gmmvit.errors import CheckpointError
from gmmvit.run import train as train_mod
from gmmvit.run.metrics_schema import problem, read_metrics
from gmmvit.run.records import CHECKPOINT, PREVIOUS_CHECKPOINT
from test_faults import TINY, interrupted_run


def history(run_dir):
    return [r["epoch"] for r in json.loads((run_dir / "metrics.json").read_text())["history"]]


def as_an_earlier_gmmvit_wrote_it(run_dir):
    """Checkpoints without the history they carry now."""
    for name in (CHECKPOINT, PREVIOUS_CHECKPOINT):
        state = torch.load(run_dir / name, weights_only=True)
        del state["history"]
        torch.save(state, run_dir / name)


@pytest.mark.parametrize("shape, why", [
    ([], "a list where a record"), ({"history": {}}, "history is {}"), ({"status": "done"}, "status is 'done'"),
    ({"history": [{"epoch": 1}, {"epoch": 0}]}, "history row 1 (epoch 0) is not after epoch 1"),
    ({"history": [{"epoch": 0, "test_top1": "high"}]}, "history row 0 has a test_top1 that is not a number"),
    ({"final": {"best_top1": [1]}}, "final.best_top1 is not a number"), ({"epochs": True}, "epochs is true"),
])
def test_a_record_of_the_wrong_shape_is_named_with_what_is_wrong(shape, why):
    assert why in problem(shape)


def test_a_truncated_record_reads_as_invalid_json_not_as_no_record(tmp_path):
    (tmp_path / "metrics.json").write_text('{"status": "finished", "hist')
    assert read_metrics(tmp_path / "metrics.json")[1].startswith("is not valid JSON")
    assert read_metrics(tmp_path / "absent.json") == (None, None)


@pytest.mark.timeout(120)
def test_a_truncated_record_beside_a_checkpoint_is_rebuilt_from_it_and_the_run_completes(
        compose_config, tmp_path, data_dir, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    cfg = interrupted_run(compose_config, run_dir, data_dir, monkeypatch)
    truncated = (run_dir / "metrics.json").read_bytes()[:50]
    (run_dir / "metrics.json").write_bytes(truncated)
    result = train_mod.train(cfg)
    log = capsys.readouterr().out
    assert f"{run_dir / 'metrics.json'} is not valid JSON" in log and "rebuilt from the checkpoint's 2 epochs" in log
    assert result["status"] == "finished" and [r["epoch"] for r in result["history"]] == [0, 1, 2]
    assert (run_dir / "metrics.json.unreadable-1").read_bytes() == truncated


@pytest.mark.timeout(120)
def test_a_finished_runs_lost_record_is_rebuilt_with_its_best_not_retrained(compose_config, tmp_path, data_dir,
                                                                            capsys):
    run_dir = tmp_path / "run"
    cfg = compose_config(["mask=gmm", *TINY, "recipe.epochs=2"], run_dir=run_dir, data_dir=data_dir)
    first = train_mod.train(cfg)
    (run_dir / "metrics.json").write_text("")
    again = train_mod.train(cfg)
    assert "epoch 1/2" not in capsys.readouterr().out.split("rebuilt")[-1]
    assert again["status"] == "finished" and again["history"] == first["history"]
    assert again["final"]["best_top1"] == first["final"]["best_top1"]


@pytest.mark.timeout(120)
def test_a_wrong_shaped_record_beside_an_older_checkpoint_is_refused_and_kept(compose_config, tmp_path, data_dir,
                                                                              monkeypatch):
    run_dir = tmp_path / "run"
    cfg = interrupted_run(compose_config, run_dir, data_dir, monkeypatch)
    as_an_earlier_gmmvit_wrote_it(run_dir)
    (run_dir / "metrics.json").write_text('{"status": "running", "history": "epochs 0 and 1"}')
    with pytest.raises(CheckpointError, match="metrics.json has the wrong shape: history is .*holds no history "
                                              "to rebuild it from: restore .* or delete .* to retrain"):
        train_mod.train(cfg)
    assert (run_dir / "metrics.json").read_text() == '{"status": "running", "history": "epochs 0 and 1"}'


@pytest.mark.timeout(120)
def test_a_checkpoint_ahead_of_its_record_is_refused_when_it_carries_no_history(compose_config, tmp_path, data_dir,
                                                                                monkeypatch):
    run_dir = tmp_path / "run"
    cfg = interrupted_run(compose_config, run_dir, data_dir, monkeypatch)
    as_an_earlier_gmmvit_wrote_it(run_dir)
    record = json.loads((run_dir / "metrics.json").read_text())
    record["history"] = record["history"][:1]
    (run_dir / "metrics.json").write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match="is at epoch 2 but .*metrics.json records 1 of those epochs"):
        train_mod.train(cfg)
    assert history(run_dir) == [0]


@pytest.mark.timeout(120)
def test_a_checkpoint_ahead_of_its_record_fills_the_missing_epochs_from_its_own_history(
        compose_config, tmp_path, data_dir, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    cfg = interrupted_run(compose_config, run_dir, data_dir, monkeypatch)
    record = json.loads((run_dir / "metrics.json").read_text())
    record["history"] = record["history"][1:]
    (run_dir / "metrics.json").write_text(json.dumps(record))
    result = train_mod.train(cfg)
    assert "records 1 of the checkpoint's 2 epochs: history rebuilt" in capsys.readouterr().out
    assert [r["epoch"] for r in result["history"]] == [0, 1, 2]
