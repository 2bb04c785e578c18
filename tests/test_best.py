"""best.pt: the weights of the best epoch by the run's selection metric, weights-only, consistent
with the history a resumed run keeps."""

from __future__ import annotations

import json

import torch

from gmmvit.run.records import RunRecord, save_tensors
from gmmvit.run.selection import BEST, BestWeights, load_weights
from gmmvit.run.train import train

TINY = ["dataset=digits", "mask=gmm", "model.depth=1", "model.embed_dim=32", "model.num_heads=2",
        "recipe.batch_size=32", "recipe.epochs=3", "recipe.warmup_epochs=0", "recipe.passes_per_epoch=1",
        "limit_train=256", "limit_test=96", "threads=1", "logger=none"]


def history(*top1):
    return [{"epoch": e, "test_top1": t} for e, t in enumerate(top1)]


def weights(value):
    return {"w": torch.full((2,), float(value))}


def test_a_finished_run_keeps_the_best_test_epochs_weights_and_names_the_epoch(compose_config, tmp_path, data_dir):
    run_dir = tmp_path / "run"
    train(compose_config(TINY, run_dir=run_dir, data_dir=data_dir))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    scores = [r["test_top1"] for r in metrics["history"]]
    best = load_weights(run_dir / BEST)  # weights_only=True
    assert best["epoch"] == scores.index(max(scores)) == metrics["best"]["epoch"] == metrics["final"]["best_epoch"]
    assert best["value"] == metrics["best"]["value"] == metrics["final"]["best_top1"]
    assert metrics["best"]["metric"] == "test_top1"
    if best["epoch"] == len(scores) - 1:
        last = torch.load(run_dir / "checkpoint.pt", weights_only=True)["model"]
        assert all(torch.equal(best["model"][k], last[k]) for k in last)


def test_an_epoch_tying_the_best_does_not_replace_it(tmp_path):
    record = RunRecord(tmp_path)
    best = BestWeights(tmp_path, record, "test_top1")
    best.start(None)
    model = torch.nn.Linear(2, 2)
    for row in history(50.0, 60.0, 60.0):
        best.after_epoch(row, model)
    assert load_weights(tmp_path / BEST)["epoch"] == 1


def test_resume_after_a_kill_between_checkpoint_and_best_pt_writes_best_from_the_checkpoint(tmp_path):
    record = RunRecord(tmp_path)
    record.update(history=history(50.0, 60.0))
    save_tensors(tmp_path / BEST, {"epoch": 0, "metric": "test_top1", "value": 50.0, "model": weights(0)})
    BestWeights(tmp_path, record, "test_top1").start({"epoch": 2, "model": weights(1)})
    held = load_weights(tmp_path / BEST)
    assert held["epoch"] == 1 and torch.equal(held["model"]["w"], weights(1)["w"])
    assert RunRecord(tmp_path).data["best"] == {"epoch": 1, "metric": "test_top1", "value": 60.0, "test_top1": 60.0}


def test_resume_drops_a_best_pt_from_an_epoch_the_history_no_longer_holds(tmp_path):
    record = RunRecord(tmp_path)
    # the last checkpoint (epoch 3) was unreadable: the run resumes from the previous one, at epoch 2
    record.update(history=history(60.0, 50.0))
    save_tensors(tmp_path / BEST, {"epoch": 2, "metric": "test_top1", "value": 70.0, "model": weights(2)})
    BestWeights(tmp_path, record, "test_top1").start({"epoch": 2, "model": weights(1)})
    assert not (tmp_path / BEST).exists() and RunRecord(tmp_path).data["best"] is None


def test_a_fresh_start_removes_a_stray_best_pt(tmp_path):
    save_tensors(tmp_path / BEST, {"epoch": 4, "metric": "test_top1", "value": 70.0, "model": weights(4)})
    BestWeights(tmp_path, RunRecord(tmp_path), "test_top1").start(None)
    assert not (tmp_path / BEST).exists()
