"""Launcher presets compose, the SLURM requeue contract holds, and `make paper` (gmmvit.config.paper_grid) lists,
estimates and launches the table, finding the same run folders as Hydra."""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import shutil
import subprocess
import sys

import pytest

from conftest import REPO, compose_cfg
from gmmvit import catalog
from gmmvit.config import paper_grid as launch
from gmmvit.config import planning
from gmmvit.sweeps import cost


def hydra_cfg(overrides):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


def test_default_launcher_is_hydras_basic_sequential_one():
    assert hydra_cfg([]).hydra.launcher._target_.endswith("BasicLauncher")
    assert hydra_cfg(["hydra/launcher=local"]).hydra.launcher._target_.endswith("BasicLauncher")


def test_slurm_preset_one_gpu_per_job_requeues_and_takes_partition_account():
    launcher = hydra_cfg(["hydra/launcher=slurm", "hydra.launcher.partition=gpu", "hydra.launcher.account=proj",
                          "hydra.launcher.timeout_min=600"]).hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert launcher.gpus_per_node == 1 and launcher.nodes == 1 and launcher.tasks_per_node == 1
    assert launcher.partition == "gpu" and launcher.account == "proj" and launcher.timeout_min == 600
    assert launcher.max_num_timeout > 0 and launcher.signal_delay_s > 0


def test_submitit_checkpoint_requeues_the_same_job_with_the_same_arguments():
    """What submitit calls on USR2: it must give back the same launcher call (train() then resumes)."""
    import submitit
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher

    launcher = SlurmLauncher(submitit_folder="x", timeout_min=5)
    args = (["model=vit", "mask=gmm"], "hydra.sweep.dir", 3, "job_id_for_3", {})
    delayed = launcher.checkpoint(*args)
    assert isinstance(delayed, submitit.helpers.DelayedSubmission)
    assert delayed.function is launcher and delayed.args == args and delayed.kwargs == {}


@pytest.mark.skipif(importlib.util.find_spec("hydra_plugins.hydra_ray_launcher") is None,
                    reason="hydra-ray-launcher is an optional extra: pip install -e '.[ray]'")
def test_ray_gpus_preset_takes_fractional_gpus():
    launcher = hydra_cfg(["hydra/launcher=ray_gpus", "hydra.launcher.ray.remote.num_gpus=0.5"]).hydra.launcher
    assert launcher._target_.endswith("RayLauncher")
    assert launcher.ray.remote.num_gpus == 0.5 and launcher.ray.remote.max_calls == 1


def test_ray_gpus_preset_declares_the_plugin_it_needs():
    text = (REPO / "conf" / "hydra" / "launcher" / "ray_gpus.yaml").read_text()
    assert "- ray" in text and "pip install -e '.[ray]'" in text
    assert "hydra-ray-launcher" in (REPO / "pyproject.toml").read_text()


def test_local_gpus_preset_runs_gpus_times_runs_per_gpu_jobs_at_once():
    from gmmvit.run.devices import gpu_slots

    launcher = hydra_cfg(["hydra/launcher=local_gpus", "runs_per_gpu=3"]).hydra.launcher
    assert launcher._target_.endswith("JoblibLauncher") and launcher.prefer == "processes"
    assert launcher.n_jobs == gpu_slots(3)


@pytest.mark.timeout(170)
def test_local_gpus_launcher_trains_the_sweep_in_parallel_processes(tmp_path):
    tiny = ["model.depth=1", "model.embed_dim=32", "model.num_heads=2", "recipe.batch_size=32", "recipe.epochs=1",
            "recipe.warmup_epochs=0", "recipe.passes_per_epoch=1", "limit_train=64", "limit_test=64", "threads=1",
            "logger=none", f"paths.data={tmp_path / 'data'}", f"hydra.sweep.dir={tmp_path / 'mr'}"]
    out = subprocess.run([sys.executable, "src/train.py", "-m", "hydra/launcher=local_gpus", "runs_per_gpu=2",
                          "dataset=digits", "mask=none,gmm", *tiny], cwd=REPO, capture_output=True, text=True,
                         timeout=160)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in out.stdout + out.stderr
    records = [json.loads(p.read_text()) for p in (tmp_path / "mr").glob("*/metrics.json")]
    assert sorted(r["meta"]["mask"] for r in records) == ["gmm", "none"]
    assert all(r["status"] == "finished" for r in records)


def test_paper_experiment_is_the_table_grid_on_the_paper_recipe():
    cfg = hydra_cfg(["experiment=paper"])
    params = cfg.hydra.sweeper.params
    assert params.model.split(",") == list(catalog.MODELS) and params.mask.split(",") == list(catalog.MASKS)
    assert params.dataset.split(",") == list(catalog.PAPER_DATASETS)
    assert cfg.sweep == "paper" and cfg.recipe.name == "paper" and cfg.recipe.epochs == 100


def dry(*argv):
    out = subprocess.run([sys.executable, "-m", "gmmvit.config.paper_grid", "--dry", *argv], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_dry_run_prints_one_run_per_gpu_hours_and_no_unmeasured_packing_gain(tmp_path):
    text = dry("--multirun", str(tmp_path), "--seeds", "0", "--models", "vit", "--masks", "none", "--datasets", "cifar10")
    summary = next(line for line in text.splitlines() if "GPU-hours left" in line)
    assert cost.NO_PACKING in summary
    assert len(re.findall(r"\d+\.\d GPU-h", summary)) == 1  # the one-run-per-GPU figure, no divided one
    assert not hasattr(cost, "PACKING_GAIN")


def test_the_table_is_120_jobs_on_two_seeds():
    args = argparse.Namespace(
        models=",".join(catalog.MODELS), masks=",".join(catalog.MASKS), datasets=",".join(catalog.PAPER_DATASETS),
        seeds="0,1", sweep="paper", multirun="multirun", overrides=[])
    assert len(launch.jobs(args)) == 120


def test_dry_run_lists_the_table_reads_status_and_estimates_gpu_hours(tmp_path):
    grid = ["--models", "vit,t2t", "--masks", "none,gmm", "--datasets", "cifar10", "--seeds", "0,1"]
    text = dry("--multirun", str(tmp_path), *grid)
    assert "8 jobs" in text and "0 finished" in text and "8 todo" in text
    assert "(assumed)" in text and "(measured, H200)" in text
    hours_all = float(text.split("about ")[1].split(" GPU-hours")[0])
    assert hours_all > 0

    # one finished run, one half-way: fewer GPU-hours, and their status is read from metrics.json
    args = argparse.Namespace(
        models="vit", masks="gmm", datasets="cifar10", seeds="0,1", sweep="paper", multirun=str(tmp_path),
        overrides=[])
    finished, running = launch.jobs(args)
    for job, m in ((finished, {"status": "finished", "final": {"best_top1": 93.5}, "epochs": 100,
                               "history": [{"epoch": e, "img_per_s": 40000.0} for e in range(100)]}),
                   (running, {"status": "running", "epochs": 100,
                              "history": [{"epoch": e, "img_per_s": 40000.0} for e in range(50)]})):
        job["dir"].mkdir(parents=True)
        (job["dir"] / "metrics.json").write_text(json.dumps(m))
    text = dry("--multirun", str(tmp_path), *grid)
    assert "1 finished, 1 running" in text and "finished, best top-1 93.50" in text and "50/100 epochs" in text
    assert "vit 40000 (measured)" in text
    assert float(text.split("about ")[1].split(" GPU-hours")[0]) < hours_all


def test_make_paper_passes_launcher_seeds_and_dry():
    out = subprocess.run(["make", "-n", "paper", "DRY=1", "SEEDS=0,1", "LAUNCHER=slurm"], cwd=REPO,
                         capture_output=True, text=True)
    assert "gmmvit.config.paper_grid --launcher slurm --seeds 0,1 --dry" in out.stdout


@pytest.mark.parametrize("target", ["eval", "locality"])
def test_make_eval_or_locality_given_both_run_and_sweep_refuses_in_one_line(target):
    out = subprocess.run(["make", "-n", target, "RUN=multirun/demo/mask=gmm", "SWEEP=multirun/demo"], cwd=REPO,
                         capture_output=True, text=True)
    assert out.returncode == 2 and len(out.stderr.splitlines()) == 1
    assert f"make {target} takes RUN= (one run) or SWEEP= (every run of a sweep), not both" in out.stderr


def test_launch_builds_the_multirun_command():
    args = argparse.Namespace(
        models="vit,swin", masks="none,gmm", datasets="cifar10", seeds="0", sweep="paper",
        multirun=str(REPO / "multirun"), launcher="slurm", overrides=["hydra.launcher.partition=gpu"])
    cmd = launch.command(args)
    assert cmd[1].endswith("src/train.py") and cmd[2] == "-m"
    assert {"experiment=paper", "sweep=paper", "model=vit,swin", "mask=none,gmm", "dataset=cifar10", "seed=0",
            "hydra/launcher=slurm", "hydra.launcher.partition=gpu"} <= set(cmd)


@pytest.mark.timeout(170)
def test_launch_runs_the_grid_and_dry_run_finds_the_same_folders(tmp_path):
    tiny = ["model.depth=1", "model.embed_dim=32", "model.num_heads=2", "recipe.batch_size=32", "recipe.epochs=1",
            "recipe.warmup_epochs=0", "recipe.passes_per_epoch=1", "limit_train=64", "limit_test=64", "threads=1",
            "workers=0", "logger=none", f"paths.data={tmp_path / 'data'}"]
    grid = ["--models", "vit", "--masks", "none,gmm", "--datasets", "digits", "--multirun", str(tmp_path / "mr")]
    out = subprocess.run([sys.executable, "-m", "gmmvit.config.paper_grid", *grid, *tiny], cwd=REPO, capture_output=True,
                         text=True, timeout=160)
    assert out.returncode == 0, out.stderr[-3000:]
    text = dry(*grid, *tiny)
    assert "2 finished, 0 running, 0 stopped, 0 failed, 0 todo; about 0.0 GPU-hours left" in text, text
    # relaunching the finished table trains nothing and says so
    again = subprocess.run([sys.executable, "-m", "gmmvit.config.paper_grid", *grid, *tiny], cwd=REPO, capture_output=True,
                           text=True, timeout=160)
    assert again.returncode == 0 and again.stdout.count("already finished") == 2
    assert "epoch 1/1 loss" not in again.stdout  # no epoch trained again


def test_paper_grid_composes_for_every_configured_model(compose_config):
    models = [m for m in catalog.MODELS if (REPO / "conf" / "model" / f"{m}.yaml").exists()]
    for model in models:
        cfg = compose_cfg(["experiment=paper", f"model={model}", "mask=gmm", "dataset=tinyimagenet"])
        assert cfg.sweep == "paper" and cfg.model.name == model


ONE_CELL = ["--models", "vit", "--masks", "none", "--datasets", "cifar10"]


@pytest.mark.parametrize("argv, line", [
    (["--dry", "--seeds", "abc"], "--seeds abc: --seeds takes comma-separated whole numbers >= 0"),
    (["--dry", "--seeds", "-1"], "--seeds -1: --seeds takes comma-separated whole numbers >= 0"),
    (["--dry", "--launcher", "bogus"], "--launcher bogus: --launcher takes one of basic, joblib, local,"),
    (["--launcher", "bogus"], "--launcher bogus: --launcher takes one of basic, joblib, local,"),
    (["--dry", "--models", "resnet"], "--models resnet: --models takes comma-separated names from cait, pit,"),
    (["--dry", "model=resnet"], "model=resnet: model takes one of cait, pit, swin, t2t, vit"),
    (["--dry", "fused=4", "bogus=1"], "bogus is not a config key"),
    (["--dry", "model=swin", "model.pool=token"], "model=swin has no class token"),
    (["model=swin", "model.pool=token"], "model=swin has no class token"),
    (["--dry", "--launcher", "slurm", "hydra.launcher.partiton=gpu"],
     "hydra.launcher.partiton is not a key of hydra.launcher"),
    (["--dry", "seed=0,1,"], "seed=0,1,: Hydra cannot parse this override (mismatched input '<EOF>')"),
    (["model=vit,"], "model=vit,: Hydra cannot parse this override"),
    (["--dry", "+experiment=demo"], "experiment is given more than once: give experiment=NAME once"),
])
def test_make_paper_refuses_a_bad_flag_or_override_in_one_line_before_launching(capsys, argv, line):
    with pytest.raises(SystemExit) as exit_:
        launch.main([*ONE_CELL, *argv])
    out = capsys.readouterr()
    assert exit_.value.code == 2 and out.out == ""  # nothing listed, no multirun launched
    assert out.err.startswith("gmmvit: error: ") and line in out.err and out.err.count("\n") == 1


def test_an_override_of_a_grid_key_narrows_the_plan_as_hydra_narrows_the_launch(tmp_path, capsys):
    grid = ["--dry", "--models", "vit,pit", "--masks", "none", "--datasets", "cifar10", "--multirun", str(tmp_path)]
    assert launch.main([*grid, "model=pit"]) == 0
    narrowed = capsys.readouterr().out
    assert launch.main([*grid[:2], "pit", *grid[3:]]) == 0
    assert narrowed == capsys.readouterr().out
    assert "1 jobs" in narrowed and narrowed.rstrip().splitlines()[1].endswith(" dataset=cifar10,mask=none,model=pit,seed=0")


LAUNCHED = ["-m", "experiment=paper", "sweep=paper", "model=vit", "mask=none", "dataset=cifar10", "seed=0"]


def test_a_multirun_a_planner_launches_does_not_check_again_the_jobs_the_planner_just_checked(monkeypatch):
    monkeypatch.setenv(planning.PLANNED, planning.planned_env(LAUNCHED)[planning.PLANNED])
    assert planning.was_planned(LAUNCHED)


def test_a_multirun_checks_its_jobs_when_its_command_line_is_not_the_one_planned(monkeypatch):
    monkeypatch.setenv(planning.PLANNED, planning.planned_env(LAUNCHED)[planning.PLANNED])
    assert not planning.was_planned([*LAUNCHED, "recipe.epochs=-1"])
    monkeypatch.delenv(planning.PLANNED)
    assert not planning.was_planned(LAUNCHED)


def test_a_multirun_checks_its_jobs_when_a_config_file_changed_since_they_were_planned(monkeypatch, tmp_path):
    conf = tmp_path / "conf"
    shutil.copytree(planning.CONF, conf)
    monkeypatch.setattr(planning, "CONF", conf)
    monkeypatch.setenv(planning.PLANNED, planning.planned_env(LAUNCHED)[planning.PLANNED])
    with (conf / "recipe" / "paper.yaml").open("a") as f:
        f.write("# edited after planning\n")
    assert not planning.was_planned(LAUNCHED)


def test_the_multirun_make_paper_launches_knows_its_jobs_were_planned(monkeypatch, tmp_path, capfd):
    # the handshake only: a script in train.py's place says what train.py's preflight would see
    script = tmp_path / "train.py"
    script.write_text("import sys\nfrom gmmvit.config.planning import was_planned\n"
                      "print('planned' if was_planned(sys.argv[1:]) else 'not planned')\n")
    monkeypatch.setattr(launch, "TRAIN_SCRIPT", script)
    assert launch.main([*ONE_CELL, "--multirun", str(tmp_path / "multirun")]) == 0
    assert capfd.readouterr().out.splitlines()[-1] == "planned"
