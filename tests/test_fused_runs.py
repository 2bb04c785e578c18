"""Fused runs are runs (gmmvit.run.fused_train, gmmvit.config.fusing): each member of a fused group
trains into its own ordinary run folder, resumes unfused and the reverse, fails on its own, and only
members at one epoch share a group."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
import torch

from gmmvit.config.compose import compose_config
from gmmvit.config.fusing import group_of, member_config
from gmmvit.run import fused_train
from gmmvit.run.metrics_schema import problem
from gmmvit.run.records import load_checkpoint
from gmmvit.run.train import build_model, train
from gmmvit.sweeps.expand import fused_groups
from gmmvit.sweeps.folders import read_run

TINY = ["dataset=digits", "mask=gmm", "model.depth=1", "model.embed_dim=32", "model.num_heads=2",
        "recipe.batch_size=32", "recipe.epochs=3", "recipe.warmup_epochs=1", "recipe.passes_per_epoch=1",
        "limit_train=128", "limit_test=64", "threads=1", "workers=0", "logger=none", "device=cpu"]


@pytest.fixture
def member(tmp_path, data_dir):
    def make(seed, *extra):
        return compose_config([*TINY, f"seed={seed}", *extra], run_dir=tmp_path / f"seed={seed}", data_dir=data_dir)
    return make


def metrics(cfg) -> dict:
    return json.loads((Path(cfg.run_dir) / "metrics.json").read_text())


class StopAfter:
    """``save_checkpoint`` that raises Ctrl-C once ``n`` checkpoints are written: a run stopped
    between epochs, as a relaunch finds it."""

    def __init__(self, save, n):
        self.save, self.n = save, n

    def __call__(self, *args, **kwargs):
        self.save(*args, **kwargs)
        self.n -= 1
        if self.n == 0:
            raise KeyboardInterrupt


def test_group_of_takes_the_jobs_that_differ_only_in_seed_mask_or_mask_options_in_order_up_to_the_size():
    jobs = [[f"mask={mask}", f"seed={seed}", "fused=2"] for mask in ("none", "gmm") for seed in (0, 1, 2)]
    assert group_of(jobs, 0, 2) == [0, 1]
    assert group_of(jobs, 1, 2) == [1, 0]
    assert group_of(jobs, 2, 2) == [2, 3]     # the third seed of none joins the first of gmm
    assert group_of(jobs, 3, 6) == [3, 0, 1, 2, 4, 5]
    assert group_of([["mask.sigma_init=[10.0,10.0]", "seed=0"], ["mask.sigma_init=[3.0,1.0]", "seed=1"]], 1, 4) == [1, 0]
    assert group_of([["model=vit", "seed=0"], ["model=swin", "seed=0"]], 0, 4) == [0]
    # cut over the runs still to train: none's and gmm's new seed fuse, not each with its finished seed 0
    to_train = lambda j: "seed=0" not in jobs[j]  # noqa: E731
    assert group_of(jobs, 1, 2, to_train=to_train) == [1, 2] and group_of(jobs, 4, 2, to_train=to_train) == [4, 5]
    assert fused_groups(jobs, 2, to_train=to_train) == [[1, 2], [4, 5]]


def test_jobs_whose_models_do_not_stack_form_separate_groups():
    jobs = [[f"mask={mask}", f"seed={seed}"] for mask in ("none", "gmm") for seed in (0, 1)]
    masked = lambda j: "mask=none" not in jobs[j]  # noqa: E731 - as ViT's class token tells them apart
    assert group_of(jobs, 1, 4, masked) == [1, 0] and group_of(jobs, 2, 4, masked) == [2, 3]


def test_a_member_config_is_composed_from_its_own_overrides_in_its_own_folder(member, tmp_path):
    cfg = member(0)
    other = member_config(cfg, [*TINY, "seed=5", "mask=gmm", "mask.sigma_init=[3.0,1.0]", "recipe.epochs=5",
                                "hydra.job.chdir=false"], tmp_path / "other")
    assert (other.seed, list(other.mask.sigma_init), other.run_dir) == (5, [3.0, 1.0], str(tmp_path / "other"))
    assert other.recipe.epochs == 5 and other.model == cfg.model and other.paths.data == cfg.paths.data
    assert cfg.seed == 0 and cfg.recipe.epochs == 3


def test_fused_on_a_single_run_says_in_one_line_that_it_trains_alone(member, capsys):
    from gmmvit.config.fusing import train_job

    cfg = member(0, "fused=3", "recipe.epochs=1", "recipe.warmup_epochs=0")
    train_job(cfg)  # not a multirun: no group to form
    out = capsys.readouterr().out
    assert "fused=3 fuses the runs of a sweep (python src/train.py -m ...); this one run trains alone" in out
    assert metrics(cfg)["status"] == "finished" and metrics(cfg)["paths"]["step"] != "fused x1"


def test_members_with_different_masks_resume_fused_from_unfused_and_unfused_from_fused(member, monkeypatch):
    import gmmvit.run.train as train_module

    cfgs = [member(0, "mask=none", "model.pool=mean"), member(1, "model.pool=mean"), member(2, "mask=elm")]
    save = train_module.save_checkpoint
    for cfg in cfgs:
        monkeypatch.setattr(train_module, "save_checkpoint", StopAfter(save, 1))
        with pytest.raises(SystemExit):
            train(cfg)
    monkeypatch.setattr(fused_train, "save_checkpoint", StopAfter(fused_train.save_checkpoint, 3))
    with pytest.raises(SystemExit):
        fused_train.train_group(cfgs)  # from each one's own AdamW state; stopped after epoch 1
    monkeypatch.undo()
    assert [len(metrics(c)["history"]) for c in cfgs] == [2, 2, 2]
    assert [metrics(c)["paths"]["step"] for c in cfgs] == ["fused x3"] * 3
    for cfg in cfgs:
        train(cfg)  # its own weights and AdamW slice, loaded strictly by the unfused run
        data = metrics(cfg)
        assert data["status"] == "finished" and [r["epoch"] for r in data["history"]] == [0, 1, 2]


@pytest.fixture
def terminal_ctrl_c():
    """Ctrl-C as a process on a terminal takes it (a pytest-xdist worker ignores SIGINT)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_while_a_member_writes_its_epoch_leaves_each_members_record_and_checkpoint_at_one_epoch(
        member, monkeypatch, terminal_ctrl_c):
    cfgs = [member(0), member(1)]
    save = fused_train.save_checkpoint

    def signalled_save(path, state):
        if Path(path) == Path(cfgs[0].run_dir):
            os.kill(os.getpid(), signal.SIGINT)
        save(path, state)

    monkeypatch.setattr(fused_train, "save_checkpoint", signalled_save)
    with pytest.raises(SystemExit):
        fused_train.train_group(cfgs)
    checkpoints = [load_checkpoint(c.run_dir) for c in cfgs]
    assert [len(metrics(c)["history"]) for c in cfgs] == [1, 0]
    assert checkpoints[0]["epoch"] == 1 and checkpoints[1] is None
    assert [metrics(c)["reason"] for c in cfgs] == ["Ctrl-C at epoch 1/3", "Ctrl-C at epoch 0/3"]


def test_a_stopped_fused_group_says_where_each_member_stopped(member, monkeypatch, capsys):
    cfgs = [member(0), member(1)]
    monkeypatch.setattr(fused_train, "save_checkpoint", StopAfter(fused_train.save_checkpoint, 3))
    with pytest.raises(SystemExit):
        fused_train.train_group(cfgs)  # stopped after the first member's second epoch
    names = [Path(c.run_dir).name for c in cfgs]
    assert (f"stopped: {names[0]} at epoch 2/3, {names[1]} at epoch 1/3; relaunch to resume"
            in capsys.readouterr().out)


def test_each_member_of_a_fused_group_is_an_ordinary_finished_run_in_its_own_folder(member, capsys):
    cfgs = [member(0), member(1)]
    fused_train.train_group(cfgs)
    assert "fused: seed=0 trains 2 runs as one model" in capsys.readouterr().out
    for g, cfg in enumerate(cfgs):
        data = metrics(cfg)
        assert problem(data) is None and data["status"] == "finished"
        assert [r["epoch"] for r in data["history"]] == [0, 1, 2] and data["paths"]["step"] == "fused x2"
        assert data["meta"]["seed"] == cfg.seed
        run = read_run(Path(cfg.run_dir))
        assert run.state == "finished" and run.config["seed"] == cfg.seed
        state = load_checkpoint(cfg.run_dir)
        alone = build_model(cfg)
        alone.load_state_dict(state["model"], strict=True)  # its own unstacked weights
        assert torch.load(Path(cfg.run_dir) / "best.pt", weights_only=True)["epoch"] == data["best"]["epoch"]
    weights = [load_checkpoint(c.run_dir)["model"] for c in cfgs]
    assert any(not torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_each_fused_members_epoch_s_is_the_groups_training_plus_its_own_evaluation(member):
    cfgs = [member(seed, "recipe.epochs=2") for seed in (0, 1, 2)]
    fused_train.train_group(cfgs)
    histories = [metrics(cfg)["history"] for cfg in cfgs]
    for epoch in (0, 1):
        rows = [history[epoch] for history in histories]
        assert len({row["train_s"] for row in rows}) == 1          # one training step loop, shared
        for row in rows:                                            # and no other member's evaluation
            assert row["eval_s"] > 0 and row["epoch_s"] == row["train_s"] + row["eval_s"]


def test_each_member_of_a_fused_group_records_its_own_models_params_and_macs(member):
    from gmmvit.nn.complexity import count_macs, count_params

    cfgs = [member(0, "mask=none", "model.pool=mean", "recipe.epochs=1"), member(1, "mask=elm", "recipe.epochs=1"),
            member(2, "mask=gmm", "recipe.epochs=1")]
    fused_train.train_group(cfgs)
    for cfg in cfgs:
        alone = build_model(cfg)
        own = {"params": count_params(alone), "macs": count_macs(alone, cfg.dataset.img_size, cfg.dataset.channels)}
        data = metrics(cfg)
        assert {k: data[k] for k in own} == own == {k: data["final"][k] for k in own}, cfg.mask.name
    assert len({metrics(c)["params"] for c in cfgs}) == 3


def test_a_run_stopped_fused_resumes_unfused_and_continues_its_history(member, monkeypatch):
    cfgs = [member(0), member(1)]
    monkeypatch.setattr(fused_train, "save_checkpoint", StopAfter(fused_train.save_checkpoint, 2))
    with pytest.raises(SystemExit):
        fused_train.train_group(cfgs)  # stopped after both members' first epoch
    assert [metrics(c)["status"] for c in cfgs] == ["stopped", "stopped"]
    first = metrics(cfgs[0])["history"]
    train(cfgs[0])  # the unfused train() loads its weights, AdamW slice, scheduler and random state
    data = metrics(cfgs[0])
    assert data["status"] == "finished" and [r["epoch"] for r in data["history"]] == [0, 1, 2]
    assert data["history"][0] == first[0]
    assert data["paths"]["step"] != "fused x2"


def test_a_fused_group_stopped_and_relaunched_trains_on_as_it_would_have_uninterrupted(member, tmp_path, monkeypatch):
    # every member's stochastic depth draws from its run's own random state, which its checkpoint holds
    def group(kind):
        cfgs = [member(seed, "deterministic=true") for seed in (0, 1)]
        for cfg in cfgs:
            cfg.run_dir = str(tmp_path / kind / Path(cfg.run_dir).name)
        return cfgs

    whole, stopped = group("whole"), group("stopped")
    assert all(c.model.drop_path > 0 for c in whole)
    fused_train.train_group(whole)
    monkeypatch.setattr(fused_train, "save_checkpoint", StopAfter(fused_train.save_checkpoint, 2))
    with pytest.raises(SystemExit):
        fused_train.train_group(stopped)  # stopped after both members' first epoch
    monkeypatch.undo()
    fused_train.train_group(stopped)
    for a, b in zip(whole, stopped):
        assert metrics(b)["status"] == "finished"
        assert [(r["train_loss"], r["test_top1"]) for r in metrics(b)["history"]] == \
            [(r["train_loss"], r["test_top1"]) for r in metrics(a)["history"]]


def test_runs_stopped_unfused_resume_fused_and_continue_their_histories(member, monkeypatch):
    import gmmvit.run.train as train_module

    cfgs = [member(0), member(1)]
    save = train_module.save_checkpoint
    for cfg in cfgs:
        monkeypatch.setattr(train_module, "save_checkpoint", StopAfter(save, 1))
        with pytest.raises(SystemExit):
            train(cfg)
    monkeypatch.undo()
    first = [metrics(c)["history"] for c in cfgs]
    assert all(len(h) == 1 for h in first)
    fused_train.train_group(cfgs)
    for cfg, before in zip(cfgs, first):
        data = metrics(cfg)
        assert data["status"] == "finished" and [r["epoch"] for r in data["history"]] == [0, 1, 2]
        assert data["history"][0] == before[0] and data["paths"]["step"] == "fused x2"


def test_only_members_at_the_first_members_epoch_join_its_group(member, monkeypatch, capsys):
    import gmmvit.run.train as train_module

    ahead, fresh = member(0), [member(1), member(2)]
    monkeypatch.setattr(train_module, "save_checkpoint", StopAfter(train_module.save_checkpoint, 1))
    with pytest.raises(SystemExit):
        train(ahead)
    monkeypatch.undo()
    fused_train.train_group([ahead, *fresh])  # ahead is at epoch 1, the others at 0: it trains alone
    assert "fused: seed=0 trains alone: the other 2 run(s) of its group cannot join it" in capsys.readouterr().out
    assert metrics(ahead)["status"] == "finished" and metrics(ahead)["paths"]["step"] != "fused x2"
    assert not any((Path(c.run_dir) / "metrics.json").exists() for c in fresh)
    fused_train.train_group([*fresh, ahead])  # the other two, at one epoch, fuse; ahead is finished
    assert [metrics(c)["paths"]["step"] for c in fresh] == ["fused x2", "fused x2"]
    assert all(metrics(c)["status"] == "finished" for c in fresh)


def test_a_fused_group_trains_on_its_members_splits_held_on_the_device_where_data_on_gpu_puts_them(member):
    cfgs = [member(0, "data_on_gpu=true"), member(1, "data_on_gpu=true")]  # here the device is the CPU
    fused_train.train_group(cfgs)
    for cfg in cfgs:
        data = metrics(cfg)
        assert data["status"] == "finished" and data["paths"]["data"] == "device" and len(data["history"]) == 3


def assert_fused_members_train_as_their_runs_alone(tmp_path, runs, *overrides):
    def cfg(kind, run):
        return compose_config([*TINY, *run, *overrides], run_dir=tmp_path / kind / run[0], data_dir=tmp_path / "data")

    fused = [cfg("fused", r) for r in runs]
    fused_train.train_group(fused)
    for run, f in zip(runs, fused):
        alone = cfg("alone", run)
        train(alone)
        got, want = metrics(f)["history"], metrics(alone)["history"]
        assert metrics(f)["paths"]["step"] == f"fused x{len(runs)}" and len(got) == len(want) == 3
        assert [r["test_top1"] for r in got] == [r["test_top1"] for r in want], run
        assert [r["train_loss"] for r in got] == pytest.approx([r["train_loss"] for r in want], rel=1e-5), run


# nothing drawn in the forward, then the default stochastic depth on the loader's per-image path and the batched split
@pytest.mark.parametrize("drop_path, data_on_gpu", [("0", "false"), ("0.1", "false"), ("0.1", "true")])
def test_a_fused_member_trains_as_its_run_alone_does_epoch_by_epoch(tmp_path, drop_path, data_on_gpu):
    # every draw is the run's own: the data's (augmentation, Mixup/CutMix, the loader's seeds) and
    # its stochastic depth's, from its run's stream, which evaluating leaves alone
    runs = [("seed=0", "mask=none", "model.pool=mean"), ("seed=1", "mask=gmm"), ("seed=2", "mask=elm")]
    assert_fused_members_train_as_their_runs_alone(tmp_path, runs, f"model.drop_path={drop_path}",
                                                   f"data_on_gpu={data_on_gpu}")


def test_a_fused_cait_member_with_a_linear_stochastic_depth_ramp_trains_as_its_run_alone_does(tmp_path):
    # rates 0, 0.05, 0.1: a block that draws nothing, a self-attention block, a class-attention block
    cait = ["model=cait", "model.depth=2", "model.cls_depth=1", "model.head_dim=8", "model.mlp_hidden=32",
            "model.drop_path=0.1", "model.drop_path_schedule=linear"]
    assert_fused_members_train_as_their_runs_alone(tmp_path, [("seed=0", "mask=none"), ("seed=1", "mask=gmm")], *cait)


def test_a_member_whose_loss_is_not_finite_fails_with_its_reason_while_the_others_finish(member, monkeypatch):
    cfgs = [member(0), member(1), member(2)]
    batches = fused_train.stacked_batches

    def poisoned(*args, **kwargs):
        for i, (images, targets, keeps) in enumerate(batches(*args, **kwargs)):
            if i == 1:
                images[1] = float("nan")
            yield images, targets, keeps

    monkeypatch.setattr(fused_train, "stacked_batches", poisoned)
    fused_train.train_group(cfgs)
    failed = metrics(cfgs[1])
    assert failed["status"] == "failed" and "loss became nan" in failed["reason"]
    assert [metrics(c)["status"] for c in (cfgs[0], cfgs[2])] == ["finished", "finished"]
    assert len(metrics(cfgs[0])["history"]) == 3


def test_a_member_failed_in_its_group_is_not_trained_again_by_its_own_job_until_the_sweep_is_relaunched(
        member, monkeypatch, tmp_path, capsys):
    import os

    from gmmvit.config.fusing import failed_in_this_launch

    cfgs = [member(0), member(1)]
    batches = fused_train.stacked_batches

    def poisoned(*args, **kwargs):
        for images, targets, keeps in batches(*args, **kwargs):
            images[1] = float("nan")
            yield images, targets, keeps

    multirun = tmp_path / "multirun.yaml"
    multirun.write_text("{}\n")  # Hydra's sweeper writes it as the launch starts
    os.utime(multirun, (1_000_000, 1_000_000))
    monkeypatch.setattr(fused_train, "stacked_batches", poisoned)
    fused_train.train_group(cfgs)
    failed = Path(cfgs[1].run_dir)
    assert metrics(cfgs[1])["status"] == "failed"
    record = failed_in_this_launch(failed, tmp_path)  # its own job, later in the same launch
    assert record is not None and "loss became nan" in record.data["reason"]
    assert f"{failed} failed in this sweep already (loss became nan" in capsys.readouterr().out
    assert failed_in_this_launch(Path(cfgs[0].run_dir), tmp_path) is None  # finished: its job skips it as ever
    os.utime(multirun, None)  # a relaunch: multirun.yaml written after the failure
    os.utime(failed / "metrics.json", (2_000_000, 2_000_000))
    assert failed_in_this_launch(failed, tmp_path) is None


def test_make_paper_dry_plans_fused_groups_and_prints_no_fused_figure_without_a_measured_rate(tmp_path, capsys):
    from gmmvit.config import paper_grid

    argv = ["--dry", "--seeds", "0,1,2", "--models", "vit", "--masks", "none,gmm", "--datasets", "cifar10",
            "--multirun", str(tmp_path), "fused=3"]
    paper_grid.main(argv)
    out = capsys.readouterr().out
    assert "fused=3: 6 jobs in 2 groups (2 of 3)" in out
    assert "fused GPU-hours: not estimated: no fused rate measured on a GPU for vit x3" in out
    assert "fused GPU-hours: about" not in out


def test_make_paper_dry_prints_fused_gpu_hours_from_a_measured_fused_rate(tmp_path, capsys, monkeypatch):
    from gmmvit.sweeps import cost
    from gmmvit.config import paper_grid

    # all three members together at one run's rate: the group takes as long as its runs one by one
    monkeypatch.setitem(cost.FUSED_IMG_PER_S, ("vit", 3), cost.GPU_IMG_PER_S["vit"])
    argv = ["--dry", "--seeds", "0,1,2", "--models", "vit", "--masks", "gmm", "--datasets", "cifar10",
            "--multirun", str(tmp_path)]
    paper_grid.main(argv)
    alone = float(capsys.readouterr().out.split("about ")[1].split(" GPU-hours")[0])
    paper_grid.main([*argv, "fused=3"])
    fused = float(capsys.readouterr().out.split("fused GPU-hours: about ")[1].split(" left")[0])
    assert fused == pytest.approx(alone, abs=0.1)


def no_wandb_account(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    for var, folder in (("NETRC", "no.netrc"), ("WANDB_DIR", "wandb_dir"), ("WANDB_CACHE_DIR", "wandb_cache"),
                        ("WANDB_CONFIG_DIR", "wandb_config")):
        monkeypatch.setenv(var, str(tmp_path / folder))
    monkeypatch.setenv("WANDB_SILENT", "true")


def test_each_member_of_a_fused_group_logs_its_own_whole_wandb_run_and_the_group_its_profile(member, tmp_path,
                                                                                              monkeypatch):
    from gmmvit.run.tracking import read_offline_run

    no_wandb_account(monkeypatch, tmp_path)
    monkeypatch.setattr("gmmvit.run.profiling.WAIT_STEPS", 1)
    wandb = ["logger=wandb", "logger.mode=offline", "profile_steps=2"]
    cfgs = [member(0, *wandb), member(1, *wandb)]
    fused_train.train_group(cfgs)
    # profile_steps profiles the group's step, as train() a run's, into its first member's folder
    assert "ms/step" in (Path(cfgs[0].run_dir) / "profile.md").read_text()
    assert not (Path(cfgs[1].run_dir) / "profile.md").exists()
    ids = set()
    for cfg in cfgs:
        [offline] = list((Path(cfg.run_dir) / "wandb").glob("offline-run-*"))
        deadline = time.time() + 30
        while not (logged := read_offline_run(offline))["complete"] and time.time() < deadline:
            time.sleep(0.2)
        epochs = [row["epoch"] for row in logged["history"] if "train/loss" in row]
        assert logged["complete"] and epochs == [1, 2, 3], (cfg.seed, logged["history"])
        assert logged["summary"]["final/best_top1"] == metrics(cfg)["final"]["best_top1"]
        # W&B tells a fused member from a run trained alone, as metrics.json does
        assert logged["summary"]["paths/step"] == metrics(cfg)["paths"]["step"] == "fused x2", logged["summary"]
        ids.add(logged["run"]["id"])
    assert len(ids) == 2


def test_a_stopped_fused_group_ends_each_members_wandb_run_stopped(member, tmp_path, monkeypatch):
    from gmmvit.run.tracking import read_offline_run

    no_wandb_account(monkeypatch, tmp_path)
    cfgs = [member(0, "logger=wandb", "logger.mode=offline"), member(1, "logger=wandb", "logger.mode=offline")]
    monkeypatch.setattr(fused_train, "save_checkpoint", StopAfter(fused_train.save_checkpoint, 2))
    with pytest.raises(SystemExit):
        fused_train.train_group(cfgs)  # stopped after both members' first epoch
    for cfg in cfgs:
        [offline] = list((Path(cfg.run_dir) / "wandb").glob("offline-run-*"))
        deadline = time.time() + 30
        while not (logged := read_offline_run(offline))["complete"] and time.time() < deadline:
            time.sleep(0.2)
        assert logged["complete"] and logged["exit_code"] == 130, cfg.seed
        assert logged["summary"]["status"] == "stopped" == metrics(cfg)["status"]
        assert logged["summary"]["reason"] == metrics(cfg)["reason"] == "Ctrl-C at epoch 1/3"


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_a_compiled_fused_group_of_two_masks_trains_as_the_eager_group_does(member, tmp_path):
    """compile=true compiles the group's vmapped forward (inductor's C++ backend here: about a minute);
    the members' stochastic depth, drawn outside it, is the eager group's."""
    alike = ["model.pool=mean", "recipe.epochs=1", "recipe.warmup_epochs=0"]
    groups = {mode: [member(seed, *alike, f"compile={mode}", f"sweep={mode}", *extra) for seed, extra in
                     ((0, ["mask=none"]), (1, []))] for mode in ("false", "true")}
    for mode, cfgs in groups.items():
        for cfg in cfgs:
            cfg.run_dir = str(tmp_path / mode / Path(cfg.run_dir).name)
        fused_train.train_group(cfgs)
    for eager, compiled in zip(groups["false"], groups["true"]):
        data = metrics(compiled)
        assert data["status"] == "finished" and data["paths"]["compiled"] == "compiled", data["paths"]
        assert metrics(eager)["paths"]["compiled"] == "eager"
        assert data["history"][0]["train_loss"] == pytest.approx(metrics(eager)["history"][0]["train_loss"], rel=1e-4)
