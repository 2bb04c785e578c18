"""Run folders written before the package was laid out by concern (their config.yaml names the old
modules: gmmvit.models.vit.ViT, gmmvit.masks..., gmmvit.data.digits) read, resume and group exactly
as folders written after it. tests/fixtures/run_before_layout/ holds two such folders, made by the
code before the move: one finished, one stopped after its first of two epochs. They were also
recorded before ``recipe.aug.ops`` existed, and trained with torchvision's ops: they resume with
``recipe.aug.ops=torchvision``, what they started with."""

from __future__ import annotations

import shutil

from conftest import REPO
from gmmvit.run.train import train
from gmmvit.sweeps.cells import SweepTable
from gmmvit.sweeps.folders import collect
from gmmvit.sweeps.status import sweep_status

FIXTURES = REPO / "tests" / "fixtures" / "run_before_layout"
# the overrides the fixtures were trained with (seed 0: finished_seed0, seed 1: stopped_seed1)
TINY = ["recipe.aug.ops=torchvision", "dataset=digits", "mask=gmm", "model.depth=1", "model.embed_dim=32", "model.num_heads=2",
        "recipe.batch_size=32", "recipe.epochs=2", "recipe.warmup_epochs=1", "recipe.passes_per_epoch=1",
        "limit_train=320", "limit_test=64", "threads=1", "workers=0", "logger=none", "sweep=before_layout"]


def old_sweep(tmp_path):
    sweep = tmp_path / "before_layout"
    shutil.copytree(FIXTURES, sweep)
    return sweep


def test_a_stopped_run_from_before_the_layout_resumes_in_place(compose_config, tmp_path, capsys):
    run_dir = old_sweep(tmp_path) / "stopped_seed1"
    result = train(compose_config([*TINY, "seed=1"], run_dir=run_dir, data_dir=tmp_path / "data"))
    assert "resuming stopped_seed1 after epoch 1/2" in capsys.readouterr().out
    assert result["status"] == "finished"
    assert [r["epoch"] for r in result["history"]] == [0, 1]


def test_runs_from_before_and_after_the_layout_share_one_cell(compose_config, tmp_path):
    sweep = old_sweep(tmp_path)
    train(compose_config([*TINY, "seed=1"], run_dir=sweep / "stopped_seed1", data_dir=tmp_path / "data"))
    assert "gmmvit.models.vit.ViT" in (sweep / "finished_seed0" / "config.yaml").read_text()  # still the old paths
    runs = collect([sweep])[sweep]
    table = SweepTable(sweep, runs)
    assert [r.variant for r in runs] == [(), ()]
    cell = table.cell("vit", "gmm", (), "digits")
    assert [seed for seed, _ in cell.values] == [0, 1]
    assert "2 finished" in sweep_status(sweep, runs)


def test_a_run_recorded_before_the_aug_ops_key_reads_back_as_the_torchvision_ops_it_trained_with(tmp_path):
    sweep = old_sweep(tmp_path)
    assert "ops:" not in (sweep / "finished_seed0" / "config.yaml").read_text()
    runs = collect([sweep])[sweep]
    assert [r.config["recipe.aug.ops"] for r in runs] == ["torchvision", "torchvision"]
