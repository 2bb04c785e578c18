"""W&B tracking in real offline mode, mask figures, the rule that tracking never stops a run, and a
W&B run that ends as the run's record does (finished, failed, stopped) and continues on resume."""

from __future__ import annotations

import json
import time

import pytest

from conftest import compose_cfg
from gmmvit.run import tracking
from gmmvit.run.figures import snapshot_epochs
from gmmvit.run import train as train_mod
from gmmvit.run.train import train

TINY = ["dataset=digits", "model.depth=1", "model.embed_dim=32", "model.num_heads=2", "recipe.batch_size=64",
        "recipe.warmup_epochs=0", "recipe.passes_per_epoch=1", "limit_train=256", "limit_test=128",
        "threads=1", "sweep=tracktest", "seed=3"]


@pytest.fixture
def no_wandb_account(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no.netrc"))
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_dir"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb_cache"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb_config"))
    monkeypatch.setenv("WANDB_SILENT", "true")


def test_offline_run_summary_config_and_mask_images(tmp_path, data_dir, no_wandb_account):
    run_dir = tmp_path / "sweep" / "mask=gmm"
    cfg = compose_cfg([*TINY, "mask=gmm", "recipe.epochs=2", "logger=wandb", "logger.mode=offline",
                       "logger.mask_figures=1"], run_dir=run_dir, data_dir=data_dir)
    result = train(cfg)
    assert result["status"] == "finished"
    metrics = json.loads((run_dir / "metrics.json").read_text())

    [offline] = list((run_dir / "wandb").glob("offline-run-*"))
    deadline = time.time() + 60          # W&B's service may finish writing a moment after finish()
    while not (logged := tracking.read_offline_run(offline))["complete"] and time.time() < deadline:
        time.sleep(0.5)
    assert logged["complete"], "the offline run log has no exit record"
    run, summary, history, config = logged["run"], logged["summary"], logged["history"], logged["config"]
    assert run["id"] == metrics["wandb_id"]
    assert run["group"] == "tracktest" and run["job_type"] == "vit-gmm" and run["project"] == "gmmvit"
    assert set(run["tags"]) >= {"model=vit", "mask=gmm", "dataset=digits", "seed=3"}
    # the summary holds the best top-1 (test/top1.max) and its epoch, params and MACs
    assert summary["test/top1"]["max"] == pytest.approx(metrics["final"]["best_top1"])
    assert summary["test/top1"]["last"] == pytest.approx(metrics["final"]["final_top1"])
    assert summary["test/top1_best"] == pytest.approx(metrics["final"]["best_top1"])
    assert summary["test/top1_best_epoch"] == metrics["final"]["best_epoch"] + 1   # epochs completed
    assert summary["params"] == metrics["params"] and summary["macs"] == metrics["macs"]
    assert summary["final/best_top1"] == pytest.approx(metrics["final"]["best_top1"])
    # the flattened resolved config
    assert config["model.name"] == "vit" and config["mask.name"] == "gmm" and config["recipe.epochs"] == 2
    assert config["model.embed_dim"] == 32 and config["seed"] == 3
    # per-epoch curves
    epochs = [h for h in history if "test/top1" in h]
    assert [h["epoch"] for h in epochs] == [1, 2]
    for h, row in zip(epochs, metrics["history"]):
        assert h["test/top1"] == pytest.approx(row["test_top1"])
        assert h["train/loss"] == pytest.approx(row["train_loss"])
        assert h["lr"] == pytest.approx(row["lr"]) and h["train/img_per_s"] > 0

    # masks: at the start, once during training (mask_figures=1 -> after epoch 1), at the end
    pngs = sorted(p.name for p in (run_dir / "masks").glob("*.png"))
    assert pngs == ["epoch_000.png", "epoch_001.png", "epoch_002.png"]
    params_csv = (run_dir / "masks" / "gmm_params.csv").read_text().splitlines()
    assert params_csv[0] == "epochs_done,layer,head,kernel,sigma,alpha"
    assert len(params_csv) == 1 + 3 * 5 * 2                 # 3 snapshots x K=5 x 2 heads x 1 layer
    media = offline / "files" / "media"
    assert len(list((media / "images").rglob("*.png"))) >= 2   # identical images share one file
    assert list((media / "table").rglob("*.table.json"))
    masks_logged = [h for h in history if "masks/central_query/path" in h]
    assert [h["epoch"] for h in masks_logged] == [0, 1, 2]
    assert all("masks/sigma/bins" in h and "masks/alpha/values" in h for h in masks_logged)


def test_mask_pngs_without_wandb_and_none_mask_draws_nothing(tmp_path, data_dir):
    elm = tmp_path / "elm"
    train(compose_cfg([*TINY, "mask=elm", "recipe.epochs=1", "logger=none"], run_dir=elm, data_dir=data_dir))
    assert sorted(p.name for p in (elm / "masks").glob("*.png")) == ["epoch_000.png", "epoch_001.png"]
    assert not (elm / "wandb").exists()
    assert not (elm / "masks" / "gmm_params.csv").exists()        # ELM has no sigma/alpha
    none = tmp_path / "none"
    train(compose_cfg([*TINY, "mask=none", "recipe.epochs=1", "logger=none"], run_dir=none, data_dir=data_dir))
    assert not (none / "masks").exists()


def test_snapshot_epochs_evenly_spaced():
    assert snapshot_epochs(100, 4) == [20, 40, 60, 80]
    assert snapshot_epochs(2, 4) == [1]
    assert snapshot_epochs(1, 4) == [] and snapshot_epochs(10, 0) == []


def test_auto_mode_without_key_is_offline_with_one_notice(no_wandb_account, tmp_path, capsys):
    assert tracking.resolve_mode("auto", tmp_path) == "offline"
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "offline" in out[0] and "make sync" in out[0]
    assert tracking.resolve_mode("disabled", tmp_path) == "disabled"


def test_wandb_failures_never_stop_a_run(monkeypatch, tmp_path, capsys):
    cfg = compose_cfg(["logger=wandb", "logger.mode=offline"], run_dir=tmp_path)
    import wandb

    def broken_init(*a, **k):
        raise RuntimeError("no W&B today")

    monkeypatch.setattr(wandb, "init", broken_init)
    tracker = tracking.build_tracker(cfg, tmp_path, None, {"sweep": "s"})
    assert type(tracker) is tracking.Tracker and tracker.run_id is None
    assert "training without it" in capsys.readouterr().out

    class Flaky(tracking.Tracker):
        calls = 0

        def log_epoch(self, row):
            Flaky.calls += 1
            raise OSError("disk full")

    guarded = tracking._Guarded(Flaky())
    for _ in range(3):
        guarded.log_epoch({})
    guarded.log_summary(a=1)
    guarded.end("finished")
    assert Flaky.calls == 1 and guarded.run_id is None
    assert capsys.readouterr().out.count("tracking off") == 1
    assert type(tracking.build_tracker(compose_cfg(["logger=none"]), tmp_path, None, {})) is tracking.Tracker


def read_complete(offline):
    """An offline run's log once W&B's service has written its exit record."""
    deadline = time.time() + 60          # W&B's service may finish writing a moment after finish()
    while not (logged := tracking.read_offline_run(offline))["complete"] and time.time() < deadline:
        time.sleep(0.5)
    assert logged["complete"], f"{offline} has no exit record"
    return logged


def interrupt_after_first_checkpoint(monkeypatch, exc):
    """The trainer meets ``exc`` right after its first checkpoint, once (a Ctrl-C, a full disk)."""
    real_save = train_mod.save_checkpoint
    raised = []

    def save_then_raise(path, state):
        real_save(path, state)
        if not raised:
            raised.append(exc)
            raise exc

    monkeypatch.setattr(train_mod, "save_checkpoint", save_then_raise)


def test_a_stopped_run_ends_its_wandb_run_stopped_and_its_relaunch_continues_that_run_in_a_log_of_the_whole_run(
        tmp_path, data_dir, no_wandb_account, monkeypatch):
    run_dir = tmp_path / "sweep" / "mask=gmm"
    cfg = compose_cfg([*TINY, "mask=gmm", "recipe.epochs=3", "logger=wandb", "logger.mode=offline"],
                      run_dir=run_dir, data_dir=data_dir)
    interrupt_after_first_checkpoint(monkeypatch, KeyboardInterrupt())
    with pytest.raises(SystemExit):
        train(cfg)
    [first] = list((run_dir / "wandb").glob("offline-run-*"))
    stopped = read_complete(first)
    assert stopped["exit_code"] == 130                        # W&B shows it failed, not finished
    assert stopped["summary"]["status"] == "stopped" and stopped["summary"]["reason"] == "Ctrl-C at epoch 1/3"

    assert train(cfg)["status"] == "finished"                  # the relaunch resumes it
    [second] = [p for p in (run_dir / "wandb").glob("offline-run-*") if p != first]
    resumed = read_complete(second)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert resumed["run"]["id"] == stopped["run"]["id"] == metrics["wandb_id"]   # one W&B run, not a fork
    # the relaunch's log holds every epoch and mask snapshot: syncing it replaces the first log's
    assert [(h["epoch"], h["train/loss"]) for h in resumed["history"] if "test/top1" in h] == \
        [(row["epoch"] + 1, pytest.approx(row["train_loss"])) for row in metrics["history"]]
    masks = [h["epoch"] for h in resumed["history"] if "masks/central_query/path" in h]
    assert masks == sorted(masks) and set(masks) == {int(p.stem[-3:]) for p in (run_dir / "masks").glob("*.png")}
    assert resumed["exit_code"] == 0
    assert resumed["summary"]["status"] == "finished" and resumed["summary"]["reason"] is None
    assert resumed["summary"]["test/top1_best"] == pytest.approx(metrics["final"]["best_top1"])
    assert resumed["summary"]["test/top1_best_epoch"] == metrics["final"]["best_epoch"] + 1


def test_a_run_that_fails_ends_its_wandb_run_failed_with_the_reason(tmp_path, data_dir, no_wandb_account,
                                                                     monkeypatch):
    run_dir = tmp_path / "sweep" / "mask=elm"
    cfg = compose_cfg([*TINY, "mask=elm", "recipe.epochs=3", "logger=wandb", "logger.mode=offline"],
                      run_dir=run_dir, data_dir=data_dir)
    interrupt_after_first_checkpoint(monkeypatch, OSError(28, "No space left on device"))
    with pytest.raises(OSError):
        train(cfg)
    [offline] = list((run_dir / "wandb").glob("offline-run-*"))
    logged = read_complete(offline)
    reason = json.loads((run_dir / "metrics.json").read_text())["reason"]
    assert reason == "OSError: [Errno 28] No space left on device"
    assert logged["exit_code"] == 1
    assert logged["summary"]["status"] == "failed" and logged["summary"]["reason"] == reason


def test_a_resumed_runs_best_top1_counts_the_epochs_its_record_holds_from_before(tmp_path, no_wandb_account):
    cfg = compose_cfg(["logger=wandb", "logger.mode=offline"], run_dir=tmp_path)
    tracker = tracking.build_tracker(cfg, tmp_path, "resumedrun", {"sweep": "s"})

    def row(epoch, top1):
        return {"epoch": epoch, "train_loss": 1.0, "test_top1": top1, "lr": 1e-3, "img_per_s": 100.0}

    tracker.begin([row(0, 50.0), row(1, 40.0)])      # epochs trained before the stop, read from metrics.json
    tracker.log_epoch(row(2, 30.0))
    tracker.end("finished")
    [offline] = list((tmp_path / "wandb").glob("offline-run-*"))
    summary = read_complete(offline)["summary"]
    assert summary["test/top1_best"] == 50.0 and summary["test/top1_best_epoch"] == 1


def test_offline_logs_are_the_folders_an_offline_wandb_run_writes_and_online_logs_none(tmp_path, no_wandb_account):
    cfg = compose_cfg(["logger=wandb", "logger.mode=offline"], run_dir=tmp_path)
    tracker = tracking.build_tracker(cfg, tmp_path, "offlinerun", {"sweep": "s"})
    tracker.begin([])
    tracker.end("finished")
    [log] = tracking.offline_logs(tmp_path)
    assert read_complete(log)["run"]["id"] == "offlinerun"
    assert tracking.online_logs(tmp_path) == []


def test_an_epoch_trained_again_after_a_stop_appears_once_in_the_gmm_parameter_csv(tmp_path, data_dir, monkeypatch):
    run_dir = tmp_path / "mask=gmm"
    cfg = compose_cfg([*TINY, "mask=gmm", "recipe.epochs=3", "logger=none"],
                      run_dir=run_dir, data_dir=data_dir)
    real_save, saves = train_mod.save_checkpoint, []

    def stopped_while_saving_the_second(path, state):   # epoch 2's masks are drawn, its checkpoint is not
        saves.append(state["epoch"])
        if len(saves) == 2:
            raise KeyboardInterrupt
        real_save(path, state)

    monkeypatch.setattr(train_mod, "save_checkpoint", stopped_while_saving_the_second)
    with pytest.raises(SystemExit):
        train(cfg)
    monkeypatch.undo()
    assert train(cfg)["status"] == "finished"             # resumes after epoch 1: trains epoch 2 again
    rows = (run_dir / "masks" / "gmm_params.csv").read_text().splitlines()[1:]
    per_snapshot = 5 * 2                                    # K = 5 x 2 heads x 1 layer
    assert [int(r.split(",")[0]) for r in rows[::per_snapshot]] == [0, 1, 2, 3]
    assert len(rows) == 4 * per_snapshot


@pytest.mark.parametrize("damage", ["{not json", "[1, 2]", '{"summary": 3, "images": ["x"]}'])
def test_a_damaged_record_of_what_was_logged_leaves_tracking_on(tmp_path, no_wandb_account, damage, capsys):
    (tmp_path / tracking.LOGGED).write_text(damage)
    cfg = compose_cfg(["logger=wandb", "logger.mode=offline"], run_dir=tmp_path)
    tracker = tracking.build_tracker(cfg, tmp_path, "damaged", {"sweep": "s"})
    tracker.begin([{"epoch": 0, "train_loss": 1.0, "test_top1": 50.0, "lr": 1e-3, "img_per_s": 100.0}])
    tracker.log_summary(params=7)
    tracker.end("finished")
    assert "tracking off" not in capsys.readouterr().out
    assert json.loads((tmp_path / tracking.LOGGED).read_text())["summary"]["params"] == 7
