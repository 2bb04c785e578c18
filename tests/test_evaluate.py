"""make eval: a trained run evaluated again with its recorded config gives back its recorded numbers,
takes another test set of the same shape, and refuses in one line what would change the network; its
W&B run gets the result under the config its training logged, and is left alone while a trainer holds it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pytest

from conftest import REPO, compose_cfg
from gmmvit.config.evaluation import eval_config, evaluate_sweep, main, run_eval
from gmmvit.errors import ConfigError
from gmmvit.run import runlock
from gmmvit.run.train import train
from test_tracking import no_wandb_account, read_complete  # noqa: F401 (a fixture)

TINY = ["dataset=digits", "mask=gmm", "model.depth=1", "model.embed_dim=32", "model.num_heads=2",
        "recipe.batch_size=32", "recipe.epochs=3", "recipe.warmup_epochs=0", "recipe.passes_per_epoch=1",
        "limit_train=256", "limit_test=96", "threads=1", "logger=none"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, data_dir):
    run_dir = tmp_path_factory.mktemp("eval") / "run"
    train(compose_cfg(TINY, run_dir=run_dir, data_dir=data_dir))
    return run_dir


def metrics(run_dir):
    return json.loads((run_dir / "metrics.json").read_text())


def trained_with_wandb(tmp_path, data_dir):
    run_dir = tmp_path / "sweep" / "mask=gmm"
    logged = [o for o in TINY if o != "logger=none"] + ["logger=wandb", "logger.mode=offline", "logger.mask_figures=0"]
    train(compose_cfg([*logged, "recipe.epochs=1"], run_dir=run_dir, data_dir=data_dir))
    return run_dir


def offline_logs(run_dir):
    return set((run_dir / "wandb").glob("offline-run-*"))


def without_wandbs_own(config):
    return {k: v for k, v in config.items() if k != "_wandb"}


def test_make_eval_takes_its_overrides_after_the_checkpoint_option(trained_run):
    # the Makefile's order: RUN --ckpt CKPT ARGS
    assert main([str(trained_run), "--ckpt", "best", "precision=fp32"]) == 0
    assert (trained_run / "eval" / "best,precision=fp32.json").is_file()


def test_evaluating_best_pt_reproduces_the_recorded_best_top1_exactly(trained_run):
    result = run_eval(trained_run, "best", [])
    assert result["top1"] == metrics(trained_run)["best"]["test_top1"] == result["recorded_test_top1"]
    assert result["epoch"] == metrics(trained_run)["best"]["epoch"]
    written = json.loads((trained_run / "eval" / "best.json").read_text())
    assert written["top1"] == result["top1"] and (trained_run / "eval" / "best.png").is_file()


def test_an_eval_on_another_count_of_test_images_compares_with_no_recorded_top1(trained_run, capsys):
    result = run_eval(trained_run, "best", ["limit_test=32"])  # the run evaluated 96 images every epoch
    assert result["n"] == 32 and result["recorded_test_top1"] is None
    assert "recorded at that epoch" not in capsys.readouterr().out
    assert run_eval(trained_run, "best", ["seed=1"])["recorded_test_top1"] is None  # another 96 of them


def test_evaluating_the_last_checkpoint_reproduces_the_last_epochs_top1(trained_run):
    result = run_eval(trained_run, "last", [])
    assert result["top1"] == metrics(trained_run)["history"][-1]["test_top1"]


def test_the_report_holds_top5_per_class_accuracy_and_a_confusion_matrix_of_every_image(trained_run):
    result = run_eval(trained_run, "best", [])
    assert result["top5"] >= result["top1"]
    assert len(result["per_class"]) == 10 and len(result["confusion"]) == 10
    assert sum(map(sum, result["confusion"])) == result["n"] == 96


def test_another_test_set_of_the_same_image_size_and_classes_is_evaluated(trained_run):
    result = run_eval(trained_run, "best", ["dataset=fashion_mnist", "precision=fp32"])
    assert result["dataset"] == "fashion_mnist" and result["n"] == 96 and result["recorded_test_top1"] is None
    assert (trained_run / "eval" / "best,dataset=fashion_mnist,precision=fp32.json").is_file()


@pytest.mark.parametrize("override, key", [("dataset=cifar100", "dataset.num_classes: 10 -> 100"),
                                           ("dataset=cifar10", "dataset.channels: 1 -> 3"),
                                           ("model.depth=2", "model.depth: 1 -> 2"),
                                           ("mask=none", "mask._target_: gmmvit.nn.masks.GaussianMixtureMask -> gmmvit.nn.masks.NoMask")])
def test_an_override_that_changes_the_network_is_refused_naming_it_and_the_key(trained_run, override, key):
    with pytest.raises(ConfigError, match=rf"^{override} changes the network .*{key}"):
        eval_config(trained_run, ["precision=fp32", override])


def test_an_unknown_key_is_refused_in_one_line(trained_run):
    with pytest.raises(ConfigError, match="precison"):
        eval_config(trained_run, ["precison=fp32"])


def test_an_override_of_a_key_make_eval_does_not_read_is_refused_naming_it(trained_run):
    with pytest.raises(ConfigError, match=r"^recipe.epochs=5: make eval does not read recipe.epochs, so it would change "
                                          r"nothing the command measures; drop it"):
        eval_config(trained_run, ["recipe.epochs=5"])


def test_a_seed_without_limit_test_is_refused_since_the_whole_test_set_draws_nothing(trained_run):
    with pytest.raises(ConfigError, match=r"^seed=3: make eval reads the seed only to draw the limit_test images"):
        eval_config(trained_run, ["limit_test=null", "seed=3"])


def test_the_runs_own_values_and_how_the_eval_runs_take_no_part_in_the_results_name(trained_run, capsys):
    (trained_run / "eval" / "last.json").unlink(missing_ok=True)
    run_eval(trained_run, "last", ["dataset=digits", "limit_test=96", "threads=1", "recipe.batch_size=16"])
    assert (trained_run / "eval" / "last.json").is_file()
    assert capsys.readouterr().out.count("the result's name leaves it out") == 4


def test_make_eval_on_a_folder_without_a_run_exits_2_with_one_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "gmmvit.config.evaluation", str(tmp_path)], cwd=REPO,
                         capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "config.yaml" in out.stderr


@pytest.mark.parametrize("command", ["gmmvit.config.evaluation", "gmmvit.config.locality"])
def test_make_eval_or_locality_on_a_file_says_it_is_a_file_in_one_line(tmp_path, command, capsys):
    import importlib

    path = tmp_path / "multirun.yaml"
    path.write_text("")
    with pytest.raises(SystemExit) as ended:
        importlib.import_module(command).main([str(path)])
    assert ended.value.code == 2
    assert capsys.readouterr().err == f"gmmvit: error: {path} is a file, not a folder; RUN names a run folder, " \
        "multirun/<sweep>/<run>, SWEEP a sweep folder, multirun/<sweep>\n"


@pytest.mark.parametrize("override, line", [
    ("recipe.batch_size=0", "recipe.batch_size=0: recipe.batch_size must be >= 1"),
    ("recipe.batch_size=-5", "recipe.batch_size=-5: recipe.batch_size must be >= 1"),
    ("threads=-2", "threads=-2: threads must be >= 0"),
    ("seed=-1", "seed=-1: seed must be >= 0"),
    ("limit_test=-1", "limit_test=-1: limit_test must be >= 1"),
    ("limit_test=0", "limit_test=0: limit_test must be >= 1"),
])
def test_an_override_out_of_its_range_is_refused_in_one_line_as_training_refuses_it(trained_run, override, line,
                                                                                     capsys):
    with pytest.raises(SystemExit) as ended:
        main([str(trained_run), override])
    assert ended.value.code == 2 and capsys.readouterr().err == f"gmmvit: error: {line}\n"


@pytest.mark.parametrize("text, fault", [("model: [unclosed", "cannot be read"), ("", "is empty"),
                                         ("- 1\n- 2\n", "holds a list, not a config"),
                                         ("model: 3\n", "has the wrong shape: model is 3"),
                                         ("seed: 0\n", "has the wrong shape: no model")])
def test_a_damaged_config_yaml_is_one_line_naming_the_file_and_the_fix(trained_run, tmp_path, text, fault):
    run_dir = tmp_path / "run"
    shutil.copytree(trained_run, run_dir)
    (run_dir / "config.yaml").write_text(text)
    with pytest.raises(ConfigError, match=rf"^{run_dir / 'config.yaml'} {re.escape(fault)}.*: make eval builds the "
                                          "network from it; restore it, or relaunch the run's training command"):
        eval_config(run_dir, [])


def test_make_eval_on_a_run_whose_config_yaml_is_empty_exits_2_with_one_line(trained_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(trained_run, run_dir)
    (run_dir / "config.yaml").write_text("")
    out = subprocess.run([sys.executable, "-m", "gmmvit.config.evaluation", str(run_dir)], cwd=REPO,
                         capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr == f"gmmvit: error: {run_dir / 'config.yaml'} is empty: make eval " \
        "builds the network from it; restore it, or relaunch the run's training command, which writes it again " \
        "from the config its checkpoint records\n"


def test_make_eval_logs_to_the_runs_wandb_run_under_the_config_its_training_logged(tmp_path, data_dir,
                                                                                   no_wandb_account):
    run_dir = trained_with_wandb(tmp_path, data_dir)
    [training] = offline_logs(run_dir)
    run_eval(run_dir, "best", ["dataset=fashion_mnist", "precision=fp32"])
    [evaluation] = offline_logs(run_dir) - {training}
    trained, evaluated = read_complete(training), read_complete(evaluation)
    assert evaluated["run"]["id"] == trained["run"]["id"] == metrics(run_dir)["wandb_id"]
    assert "eval/best,dataset=fashion_mnist,precision=fp32/top1" in evaluated["summary"]
    assert without_wandbs_own(evaluated["config"]) == without_wandbs_own(trained["config"])
    assert trained["config"]["dataset.name"] == "digits" and "environment.commit" in trained["config"]


def test_each_analysis_log_holds_the_whole_run_since_syncing_it_replaces_the_runs_earlier_logs(
        tmp_path, data_dir, no_wandb_account):
    run_dir = trained_with_wandb(tmp_path, data_dir)
    [training] = offline_logs(run_dir)
    run_eval(run_dir, "best", ["precision=fp32"])
    [first] = offline_logs(run_dir) - {training}
    read_complete(first)
    run_eval(run_dir, "last", [])
    [second] = offline_logs(run_dir) - {training, first}
    trained, evaluated = read_complete(training), read_complete(second)

    def epochs_of(key, log):
        return [row["epoch"] for row in log["history"] if key in row]

    assert epochs_of("test/top1", evaluated) == epochs_of("test/top1", trained) == [1]
    assert epochs_of("masks/central_query/path", evaluated) == epochs_of("masks/central_query/path", trained)
    assert any("eval/best,precision=fp32/confusion/path" in row for row in evaluated["history"])
    scalars = {k: v for k, v in trained["summary"].items() if not k.startswith("_") and not isinstance(v, dict)}
    assert {k: evaluated["summary"].get(k) for k in scalars} == scalars
    assert {"eval/best,precision=fp32/top1", "eval/last/top1"} <= set(evaluated["summary"])


def test_make_eval_while_a_trainer_holds_the_run_leaves_its_wandb_run_alone_and_writes_its_result(
        tmp_path, data_dir, no_wandb_account, capsys):
    run_dir = trained_with_wandb(tmp_path, data_dir)
    before = offline_logs(run_dir)
    with runlock.acquire(run_dir):  # what a trainer holds while it trains the run
        result = run_eval(run_dir, "best", [])
    assert offline_logs(run_dir) == before
    assert json.loads((run_dir / "eval" / "best.json").read_text())["top1"] == result["top1"]
    out = capsys.readouterr().out
    assert f"[gmmvit] {run_dir} is being trained (pid " in out and "W&B left alone" in out
    assert f"the result is in {run_dir / 'eval' / 'best.json'}" in out and "top-1" in out


@pytest.fixture(scope="module")
def two_epoch_run(tmp_path_factory, data_dir):
    """A run of two epochs: checkpoint.pt and checkpoint.prev.pt hold both, so one of them holds its best."""
    run_dir = tmp_path_factory.mktemp("eval2") / "run"
    train(compose_cfg([o for o in TINY if not o.startswith("recipe.epochs=")] + ["recipe.epochs=2"], run_dir=run_dir,
                      data_dir=data_dir))
    return run_dir


def without_best_pt(run_dir, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    (copy / "best.pt").unlink()
    return copy


def checkpoint_of(epoch):
    return "checkpoint.pt" if epoch == 1 else "checkpoint.prev.pt"  # a two-epoch run's


def test_without_best_pt_best_is_evaluated_from_the_kept_checkpoint_holding_the_best_epoch(two_epoch_run, tmp_path,
                                                                                          capsys):
    run_dir = without_best_pt(two_epoch_run, tmp_path)
    best = metrics(run_dir)["best"]
    result = run_eval(run_dir, "best", [])
    assert (result["epoch"], result["top1"]) == (best["epoch"], best["test_top1"])
    assert capsys.readouterr().out.splitlines()[0] == (
        f"[gmmvit] {run_dir / 'best.pt'} is missing; evaluating {run_dir / checkpoint_of(best['epoch'])}, which holds "
        f"the best epoch (epoch {best['epoch'] + 1}/2, test_top1 {best['value']:.2f})")


def test_make_eval_names_the_weights_epoch_as_the_runs_own_lines_count_it(two_epoch_run, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(two_epoch_run, run_dir)
    best = metrics(run_dir)["best"]["epoch"]
    assert main([str(run_dir), "--ckpt", "best"]) == main([str(run_dir), "--ckpt", "last"]) == 0
    best_line, last_line = [line for line in capsys.readouterr().out.splitlines() if line.startswith(str(run_dir))]
    assert f"(best: best.pt, epoch {best + 1}/2) on digits" in best_line  # as 'finished: best top-1 (epoch k/2)'
    assert "(last: checkpoint.pt, epoch 2/2) on digits" in last_line
    assert written(run_dir, "best")["epoch"] == best  # the record keeps metrics.json's index


def test_make_eval_on_a_run_ends_naming_the_files_it_wrote(two_epoch_run, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(two_epoch_run, run_dir)
    assert main([str(run_dir), "--ckpt", "last", "limit_test=32"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"make eval: {run_dir / 'eval' / 'last,limit_test=32'}.json and .png"
    assert (run_dir / "eval" / "last,limit_test=32.png").is_file()


def written(run_dir, name):
    return json.loads((run_dir / "eval" / f"{name}.json").read_text())


def test_the_result_records_best_pt_as_the_file_its_weights_came_from(two_epoch_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(two_epoch_run, run_dir)
    assert run_eval(run_dir, "best", [])["weights"] == written(run_dir, "best")["weights"] == "best.pt"


def test_without_best_pt_the_result_records_the_kept_checkpoint_its_weights_came_from(two_epoch_run, tmp_path):
    run_dir = without_best_pt(two_epoch_run, tmp_path)
    run_eval(run_dir, "best", [])
    assert written(run_dir, "best")["weights"] == checkpoint_of(metrics(run_dir)["best"]["epoch"])


def test_the_last_checkpoint_records_checkpoint_pt_or_the_previous_one_where_it_is_unreadable(two_epoch_run,
                                                                                                tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(two_epoch_run, run_dir)
    assert run_eval(run_dir, "last", [])["weights"] == "checkpoint.pt"
    (run_dir / "checkpoint.pt").write_bytes(b"truncated")
    result = run_eval(run_dir, "last", [])
    assert (result["weights"], result["epoch"]) == ("checkpoint.prev.pt", 0) == (written(run_dir, "last")["weights"], 0)


def test_without_best_pt_or_a_checkpoint_of_the_best_epoch_make_eval_says_so_in_one_line(two_epoch_run, tmp_path,
                                                                                         capsys):
    run_dir = without_best_pt(two_epoch_run, tmp_path)
    best = metrics(run_dir)["best"]
    (run_dir / checkpoint_of(best["epoch"])).unlink()
    other = 1 - best["epoch"]
    with pytest.raises(SystemExit) as ended:
        main([str(run_dir), "--ckpt", "best"])
    assert ended.value.code == 2 and capsys.readouterr().err == (
        f"gmmvit: error: {run_dir / 'best.pt'} is missing, and no kept checkpoint holds its best epoch "
        f"(epoch {best['epoch'] + 1}/2, test_top1 {best['value']:.2f}): {checkpoint_of(other)} holds epoch {other + 1}/2; "
        "evaluate the last one with "
        "CKPT=last, or retrain the run to write best.pt\n")


# make eval SWEEP=...: every finished run of a sweep, then the sweep's table

SWEEP_RUN = [o for o in TINY if not o.startswith("recipe.epochs=")] + ["recipe.epochs=2"]


@pytest.fixture(scope="module")
def trained_sweep(tmp_path_factory, data_dir):
    """Two finished runs of a sweep (masks none and GMM), to be copied by each test that evaluates it."""
    sweep = tmp_path_factory.mktemp("eval_sweep") / "sweep"
    for mask in ("none", "gmm"):
        train(compose_cfg(SWEEP_RUN + [f"mask={mask}"], run_dir=sweep / f"mask={mask}", data_dir=data_dir))
    return sweep


def copy_of(sweep, tmp_path):
    copy = tmp_path / "sweep"
    shutil.copytree(sweep, copy)
    return copy


def with_status(run_dir, status, reason=None):
    record = metrics(run_dir)
    record.update(status=status, reason=reason)
    (run_dir / "metrics.json").write_text(json.dumps(record))


def test_make_eval_on_a_sweep_evaluates_every_finished_run_with_its_own_recorded_config(trained_sweep, tmp_path):
    sweep = copy_of(trained_sweep, tmp_path)
    assert main([str(sweep), "--ckpt", "best", "precision=fp32"]) == 0
    for run_dir in (sweep / "mask=none", sweep / "mask=gmm"):
        result = written(run_dir, "best,precision=fp32")
        assert result["top1"] == metrics(run_dir)["best"]["test_top1"] == result["recorded_test_top1"]


def test_the_sweeps_table_has_a_row_per_run_with_its_weights_epoch_and_figures(trained_sweep, tmp_path, capsys):
    sweep = copy_of(trained_sweep, tmp_path)
    evaluate_sweep(sweep, "best", [])
    table = json.loads((sweep / "eval_best.json").read_text())
    assert [(r["run"], r["model"], r["mask"], r["dataset"], r["seed"], r["weights"]) for r in table["runs"]] == [
        ("mask=none", "vit", "none", "digits", 0, "best.pt"), ("mask=gmm", "vit", "gmm", "digits", 0, "best.pt")]
    for row in table["runs"]:
        result = written(sweep / row["run"], "best")
        assert (row["epoch"], row["top1"], row["top5"], row["recorded_test_top1"]) == (
            result["epoch"], result["top1"], result["top5"], result["recorded_test_top1"])
    markdown = (sweep / "eval_best.md").read_text()
    assert f"| mask=gmm | vit | gmm | digits | 0 | best.pt | {table['runs'][1]['epoch'] + 1}/2 | " in markdown
    assert markdown in capsys.readouterr().out


def test_another_test_set_leaves_the_recorded_top1_out_of_the_sweeps_table(trained_sweep, tmp_path):
    sweep = copy_of(trained_sweep, tmp_path)
    evaluate_sweep(sweep, "last", ["dataset=fashion_mnist"])
    table = json.loads((sweep / "eval_last,dataset=fashion_mnist.json").read_text())
    assert {(r["dataset"], r["recorded_test_top1"]) for r in table["runs"]} == {("fashion_mnist", None)}
    assert table["overrides"] == ["dataset=fashion_mnist"] and table["checkpoint"] == "last"


@pytest.mark.parametrize("status, reason, held, why", [
    ("failed", "RuntimeError: out of memory", False, "failed (RuntimeError: out of memory)"),
    ("stopped", None, False, "stopped at 2/2 epochs (relaunch to resume)"),
    ("running", None, True, "running (pid "),
])
def test_a_run_not_finished_is_listed_in_one_line_and_skipped(trained_sweep, tmp_path, capsys, status, reason, held,
                                                              why):
    sweep = copy_of(trained_sweep, tmp_path)
    unfinished = sweep / "mask=gmm,seed=1"
    shutil.copytree(sweep / "mask=gmm", unfinished)
    with_status(unfinished, status, reason)
    if held:
        with runlock.acquire(unfinished):  # what a trainer holds while it trains the run
            evaluate_sweep(sweep, "best", [])
    else:
        evaluate_sweep(sweep, "best", [])
    [line] = [s for s in capsys.readouterr().out.splitlines() if "skipped" in s]
    assert line.startswith(f"make eval: {unfinished} skipped: {why}")
    assert not (unfinished / "eval" / "best.json").exists()
    table = json.loads((sweep / "eval_best.json").read_text())
    assert [r["run"] for r in table["runs"]] == ["mask=none", "mask=gmm"]
    assert [s["run"] for s in table["skipped"]] == ["mask=gmm,seed=1"]
    assert "- mask=gmm,seed=1: " in (sweep / "eval_best.md").read_text()


def test_a_finished_run_a_trainer_holds_again_is_skipped(trained_sweep, tmp_path, capsys):
    sweep = copy_of(trained_sweep, tmp_path)
    with runlock.acquire(sweep / "mask=gmm"):  # a relaunch rewriting its weights
        evaluate_sweep(sweep, "best", [])
    assert f"make eval: {sweep / 'mask=gmm'} skipped: held by a trainer (pid " in capsys.readouterr().out
    assert not (sweep / "mask=gmm" / "eval").exists()


def test_the_runs_of_nested_sweeps_are_evaluated_into_one_table_at_the_folder_given(trained_sweep, tmp_path):
    ablation = tmp_path / "ablation"
    shutil.copytree(trained_sweep / "mask=none", ablation / "pooling" / "mask=none")
    shutil.copytree(trained_sweep / "mask=gmm", ablation / "placement" / "mask=gmm")
    evaluate_sweep(ablation, "best", [])
    table = json.loads((ablation / "eval_best.json").read_text())
    assert sorted(r["run"] for r in table["runs"]) == ["placement/mask=gmm", "pooling/mask=none"]
    assert (ablation / "placement" / "mask=gmm" / "eval" / "best.json").is_file()


def test_an_override_refused_for_one_run_ends_the_command_naming_it_before_any_run_is_evaluated(trained_sweep,
                                                                                                 tmp_path, capsys):
    sweep = copy_of(trained_sweep, tmp_path)
    with pytest.raises(SystemExit) as ended:  # mask=gmm keeps the GMM run's network, changes the other's
        main([str(sweep), "mask=gmm"])
    err = capsys.readouterr().err
    assert ended.value.code == 2 and err.count("\n") == 1
    assert err.startswith(f"gmmvit: error: {sweep / 'mask=none'}: mask=gmm changes the network the weights belong to")
    assert not list(sweep.glob("*/eval")) and not list(sweep.glob("eval_*"))


def test_a_run_whose_config_yaml_is_damaged_is_listed_and_skipped_the_others_evaluated(trained_sweep, tmp_path,
                                                                                       capsys):
    sweep = copy_of(trained_sweep, tmp_path)
    (sweep / "mask=gmm" / "config.yaml").write_text("")
    evaluate_sweep(sweep, "best", [])
    assert f"make eval: {sweep / 'mask=gmm'} skipped: " in capsys.readouterr().out
    assert [r["run"] for r in json.loads((sweep / "eval_best.json").read_text())["runs"]] == ["mask=none"]


def test_a_sweep_without_a_finished_run_ends_in_one_line(trained_sweep, tmp_path, capsys):
    sweep = copy_of(trained_sweep, tmp_path)
    for run_dir in sweep.iterdir():
        with_status(run_dir, "failed", "killed")
    with pytest.raises(SystemExit) as ended:
        main([str(sweep)])
    assert ended.value.code == 2 and capsys.readouterr().err.count("\n") == 1
    assert not list(sweep.glob("eval_*"))


def test_make_eval_on_a_path_that_does_not_exist_ends_in_one_line_naming_it(tmp_path, capsys):
    with pytest.raises(SystemExit) as ended:
        main([str(tmp_path / "nowhere")])
    assert ended.value.code == 2
    assert capsys.readouterr().err.startswith(f"gmmvit: error: {tmp_path / 'nowhere'} does not exist; RUN names")


def test_make_eval_on_a_sweep_logs_each_runs_result_to_its_wandb_run(tmp_path, data_dir, no_wandb_account):
    run_dir = trained_with_wandb(tmp_path, data_dir)
    [training] = offline_logs(run_dir)
    evaluate_sweep(run_dir.parent, "best", ["precision=fp32"])
    [evaluation] = offline_logs(run_dir) - {training}
    assert read_complete(evaluation)["run"]["id"] == metrics(run_dir)["wandb_id"]
    assert "eval/best,precision=fp32/top1" in read_complete(evaluation)["summary"]
