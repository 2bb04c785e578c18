"""train(cfg) end to end on small real data: one step, the run record, the run folder."""

import json
import subprocess
import sys

import torch

from conftest import REPO
from gmmvit.run.train import build_model, train

TINY = ["model.depth=1", "model.embed_dim=32", "model.num_heads=2", "recipe.batch_size=32",
        "recipe.epochs=1", "recipe.warmup_epochs=0", "recipe.passes_per_epoch=1", "limit_train=64",
        "limit_test=64", "threads=1", "logger=none"]


def test_one_train_step_changes_the_weights_and_masks(compose_config):
    cfg = compose_config(["model=vit", "mask=gmm", "dataset=cifar10"])
    model = build_model(cfg)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss = torch.nn.functional.cross_entropy(model(torch.randn(4, 3, 32, 32)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    opt.step()
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert any(k.endswith("mask.sigma") for k in changed) and any(k.endswith("mask.alpha") for k in changed)
    assert "head.weight" in changed


def test_train_writes_config_metrics_and_checkpoint(compose_config, tmp_path, data_dir):
    run_dir = tmp_path / "run"
    cfg = compose_config(["dataset=digits", "mask=gmm", *TINY], run_dir=run_dir, data_dir=data_dir)
    result = train(cfg)
    assert result["status"] == "finished"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    row = metrics["history"][0]
    assert set(row) >= {"epoch", "train_loss", "test_top1", "lr", "img_per_s"}
    final = metrics["final"]
    assert final["params"] > 0 and final["macs"] > 0 and final["wall_s"] > 0
    assert final["best_top1"] == row["test_top1"] == final["final_top1"]
    assert (run_dir / "config.yaml").exists() and (run_dir / "checkpoint.pt").exists()


def test_a_runs_epoch_s_is_its_training_plus_its_test_evaluation(compose_config, tmp_path, data_dir):
    run_dir = tmp_path / "run"
    train(compose_config(["dataset=digits", *TINY], run_dir=run_dir, data_dir=data_dir))
    [row] = json.loads((run_dir / "metrics.json").read_text())["history"]
    assert row["train_s"] > 0 and row["eval_s"] > 0
    assert row["epoch_s"] == row["train_s"] + row["eval_s"]


def test_train_on_fashion_mnist_from_the_debian_package(compose_config, tmp_path, data_dir):
    cfg = compose_config(["dataset=fashion_mnist", *TINY], run_dir=tmp_path / "run", data_dir=data_dir)
    assert train(cfg)["status"] == "finished"


def test_cli_run_lands_in_multirun_named_by_sweep_and_overrides(tmp_path):
    sweep = f"pytest-{tmp_path.name}"
    out = subprocess.run([sys.executable, "src/train.py", "dataset=digits", "mask=gmm", f"sweep={sweep}",
                          f"paths.data={tmp_path}", *TINY], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    # Hydra sorts the overrides: the same run is found whatever order they are typed in
    identity = sorted(["dataset=digits", "mask=gmm", *(t for t in TINY if not t.startswith(("threads", "logger")))])
    run_dir = REPO / "multirun" / sweep / ",".join(identity)
    try:
        assert json.loads((run_dir / "metrics.json").read_text())["status"] == "finished"
    finally:
        import shutil
        shutil.rmtree(REPO / "multirun" / sweep, ignore_errors=True)
