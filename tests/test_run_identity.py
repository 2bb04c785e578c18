"""A run is what its config says: config.yaml is written once, and a relaunch into a folder whose
recorded config trains something else is refused in one line naming each differing key with both
values, nothing written; in a sweep that job is skipped and the others go on. A config.yaml lost beside
a checkpoint is checked against the config the checkpoint records and written again from it, or, with
no record to check against, refused in one line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
import yaml

from conftest import REPO, compose_cfg
from gmmvit.errors import ConfigError
from gmmvit.run import train as train_mod
from gmmvit.run.identity import DifferentRun, differences

TINY = ["dataset=digits", "model.depth=1", "model.embed_dim=32", "model.num_heads=2", "recipe.batch_size=32",
        "recipe.epochs=1", "recipe.warmup_epochs=0", "recipe.passes_per_epoch=1", "limit_train=64",
        "limit_test=32", "threads=1", "workers=0", "logger=none"]


def test_speed_settings_and_bookkeeping_are_not_differences():
    recorded = {"threads": 1, "device": "cpu", "sweep": "a", "logger": {"name": "none"}, "run_dir": "/x",
                "dataset": {"source": {"root": "/old/digits"}}, "recipe": {"grad_clip": None}}
    current = {"threads": 2, "device": "cuda", "sweep": "b", "logger": {"name": "wandb"}, "run_dir": "/y",
               "dataset": {"source": {"root": "/new/digits"}}, "recipe": {"grad_clip": None}}
    assert differences(recorded, current) == []


def test_list_values_and_moved_targets_compare_as_what_they_train():
    recorded = {"mask": {"_target_": "gmmvit.masks.GmmMask", "sigma_init": [10.0, 10.0]}}
    assert differences(recorded, {"mask": {"_target_": "gmmvit.nn.masks.GmmMask", "sigma_init": [10.0, 10.0]}}) == []
    assert differences(recorded, {"mask": {"_target_": "gmmvit.nn.masks.GmmMask", "sigma_init": [3.0, 1.0]}}) == [
        ("mask.sigma_init", [10.0, 10.0], [3.0, 1.0])]


@pytest.mark.timeout(120)
def test_a_relaunch_with_another_recipe_is_refused_naming_the_keys_and_writes_nothing(compose_config, tmp_path,
                                                                                       data_dir):
    run_dir = tmp_path / "run"
    train_mod.train(compose_config(TINY, run_dir=run_dir, data_dir=data_dir))
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    other = compose_config([*TINY, "recipe.label_smoothing=0.0", "model.drop_path=0.0"], run_dir=run_dir,
                           data_dir=data_dir)
    with pytest.raises(DifferentRun, match=r"holds a run of another config: model.drop_path=0.1 there, 0.0 now; "
                                           r"recipe.label_smoothing=0.1 there, 0.0 now; relaunch with its values, or "
                                           r"give this config its own folder \(sweep=NEW_NAME\)"):
        train_mod.train(other)
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before


@pytest.mark.timeout(120)
def test_config_yaml_is_written_once_and_a_relaunch_with_other_speed_settings_resumes(compose_config, tmp_path,
                                                                                      data_dir, monkeypatch):
    from test_faults import TINY as INTERRUPTED, interrupted_run

    run_dir = tmp_path / "run"
    interrupted_run(compose_config, run_dir, data_dir, monkeypatch)
    recorded = (run_dir / "config.yaml").read_bytes()
    result = train_mod.train(compose_config(["mask=gmm", *INTERRUPTED, "recipe.epochs=3", "threads=2",
                                             "attention=explicit"], run_dir=run_dir, data_dir=data_dir))
    assert result["status"] == "finished" and [r["epoch"] for r in result["history"]] == [0, 1, 2]
    assert (run_dir / "config.yaml").read_bytes() == recorded


@pytest.mark.timeout(170)
def test_in_a_sweep_the_refused_job_is_one_line_and_the_other_jobs_train(tmp_path, data_dir):
    sweep_dir = tmp_path / "sweep"
    args = [sys.executable, "src/train.py", "-m", *TINY, f"paths.data={data_dir}", f"hydra.sweep.dir={sweep_dir}"]
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    first = subprocess.run([*args, "seed=0"], cwd=REPO, capture_output=True, text=True, env=env, timeout=150)
    assert first.returncode == 0, first.stderr[-3000:]
    [run_dir] = [p for p in sweep_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    config["recipe"]["label_smoothing"] = 0.3  # as a preset left out of the folder name would have trained it
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    out = subprocess.run([*args, "seed=0,1"], cwd=REPO, capture_output=True, text=True, env=env, timeout=150)
    assert out.returncode == 0, out.stderr[-3000:]
    refusals = [line for line in out.stderr.splitlines() if line.startswith("gmmvit: error:")]
    assert len(refusals) == 1 and "recipe.label_smoothing=0.3 there, 0.1 now" in refusals[0]
    assert "already finished" not in out.stdout
    statuses = [json.loads((p / "metrics.json").read_text())["status"] for p in sweep_dir.iterdir()
                if (p / "metrics.json").exists()]
    assert statuses == ["finished", "finished"]


def test_a_default_spelled_out_on_relaunch_continues_the_run_already_trained_instead_of_training_it_twice(
        tmp_path, data_dir):
    """``-m seed=0,1`` after a sweep launched without a seed: the seed=0 job is the run already there
    (one folder, one record, linked from the job's name), so it is neither trained nor counted twice."""
    from gmmvit.sweeps.folders import collect
    from gmmvit.sweeps.status import sweep_status

    sweep_dir = tmp_path / "sweep"
    args = [sys.executable, "src/train.py", "-m", *TINY, f"paths.data={data_dir}", f"hydra.sweep.dir={sweep_dir}"]
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    first = subprocess.run(args, cwd=REPO, capture_output=True, text=True, env=env, timeout=150)
    assert first.returncode == 0, first.stderr[-3000:]
    [trained] = [p for p in sweep_dir.iterdir() if (p / "metrics.json").exists()]
    record = (trained / "metrics.json").read_bytes()
    out = subprocess.run([*args, "seed=0,1"], cwd=REPO, capture_output=True, text=True, env=env, timeout=150)
    assert out.returncode == 0, out.stderr[-3000:]
    spelled = sweep_dir / f"{trained.name},seed=0"
    assert f"{spelled.name}: {trained} already holds this run" in out.stdout
    assert f"{trained} already finished" in out.stdout
    assert spelled.is_symlink() and spelled.resolve() == trained.resolve()
    assert (trained / "metrics.json").read_bytes() == record  # not trained again
    runs = [p.name for p in sweep_dir.iterdir() if (p / "metrics.json").exists() and not p.is_symlink()]
    assert sorted(runs) == sorted([trained.name, f"{trained.name},seed=1"])
    [(folder, found)] = collect([sweep_dir]).items()
    assert sweep_status(folder, found).splitlines()[-1] == "2 finished; sweep finished"


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory, data_dir):
    """A three-epoch run stopped after its 2nd checkpoint; each test relaunches a copy of it."""
    from test_faults import interrupted_run

    run_dir = tmp_path_factory.mktemp("stopped") / "run"
    with pytest.MonkeyPatch.context() as monkeypatch:
        interrupted_run(compose_cfg, run_dir, data_dir, monkeypatch)
    return run_dir


def relaunch(stopped_run, tmp_path, data_dir, *overrides):
    from test_faults import TINY as INTERRUPTED

    return compose_cfg(["mask=gmm", *INTERRUPTED, "recipe.epochs=3", *overrides], run_dir=tmp_path / "run",
                       data_dir=data_dir)


def damage(stopped_run, tmp_path, text):
    run_dir = tmp_path / "run"
    shutil.copytree(stopped_run, run_dir)
    config = run_dir / "config.yaml"
    config.unlink() if text is None else config.write_text(text)
    return run_dir


def trained_keys(path):
    return {k: v for k, v in yaml.safe_load(path.read_text()).items() if k != "run_dir"}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("text, fault", [("", "is empty"), (None, "is missing"), ("model: [unclosed", "cannot be read")])
def test_a_lost_config_yaml_beside_a_checkpoint_is_written_again_from_the_checkpoints_record_and_the_run_resumes(
        stopped_run, tmp_path, data_dir, capsys, text, fault):
    run_dir = damage(stopped_run, tmp_path, text)
    result = train_mod.train(relaunch(stopped_run, tmp_path, data_dir))
    out = capsys.readouterr().out
    assert f"{run_dir / 'config.yaml'} {fault}" in out and "written again from the config its checkpoint records" in out
    assert "resuming run after epoch 2/3" in out and result["status"] == "finished"
    assert trained_keys(run_dir / "config.yaml") == trained_keys(stopped_run / "config.yaml")
    kept = run_dir / "config.yaml.unreadable-1"
    assert (kept.read_text() == text) if text is not None else not kept.exists()


@pytest.mark.timeout(60)
def test_another_config_beside_a_lost_config_yaml_is_refused_against_the_checkpoints_record(stopped_run, tmp_path,
                                                                                            data_dir):
    run_dir = damage(stopped_run, tmp_path, "")
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    with pytest.raises(DifferentRun, match=r"recipe.label_smoothing=0.1 there, 0.0 now"):
        train_mod.train(relaunch(stopped_run, tmp_path, data_dir, "recipe.label_smoothing=0.0"))
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before


@pytest.mark.timeout(60)
def test_a_lost_config_yaml_beside_a_checkpoint_that_records_no_config_is_refused_in_one_line(stopped_run, tmp_path,
                                                                                              data_dir):
    run_dir = damage(stopped_run, tmp_path, "")
    for name in ("checkpoint.pt", "checkpoint.prev.pt"):  # as an earlier gmmvit wrote them
        state = torch.load(run_dir / name, weights_only=True)
        del state["config"]
        torch.save(state, run_dir / name)
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    config = run_dir / "config.yaml"
    with pytest.raises(ConfigError, match=rf"^{config} is empty and the checkpoint of {run_dir} does not record the "
                                          rf"config it trained with, .*: restore {config}, or delete {run_dir} to retrain"):
        train_mod.train(relaunch(stopped_run, tmp_path, data_dir))
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before


@pytest.mark.timeout(60)
def test_an_empty_config_yaml_with_nothing_trained_is_kept_aside_and_written_as_the_run_starts(tmp_path, data_dir):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("")
    result = train_mod.train(compose_cfg(TINY, run_dir=run_dir, data_dir=data_dir))
    assert result["status"] == "finished" and (run_dir / "config.yaml.unreadable-1").read_text() == ""
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["recipe"]["epochs"] == 1
