"""Every command that reads run folders (table, status, dashboard, records upgrade) refuses bad
input as the trainer does: one ``gmmvit: error:`` line naming the path and the fix, exit code 2, nothing
written; and what it reports of a readable sweep is never a false statement."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from gmmvit.catalog import REPO
from gmmvit.config import evaluation, locality
from gmmvit.run import records
from gmmvit.sweeps import dashboard, status, table
from gmmvit.sweeps.folders import read_any
from gmmvit.sweeps.status import sweep_status

SWEEP_READERS = {"table": table.main, "status": status.main, "dashboard": dashboard.main}


def unlogged_run(folder):
    """A finished one-epoch run folder of a logger=none sweep, in the on-disk format train() writes."""
    folder.mkdir(parents=True)
    config = {"model": {"name": "vit"}, "mask": {"name": "none"}, "dataset": {"name": "digits"}, "seed": 0,
              "recipe": {"epochs": 1}, "logger": {"name": "none"}, "sweep": folder.parent.name}
    metrics = {"status": "finished", "epochs": 1, "history": [{"epoch": 0, "test_top1": 50.0, "epoch_s": 1.0}],
               "final": {"best_top1": 50.0, "final_top1": 50.0, "best_epoch": 0}, "params": 10, "macs": 20}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


def bad_path(tmp_path, kind):
    """A path a user might mistype, and the words the refusal must hold."""
    if kind == "absent":
        return tmp_path / "nowhere", "does not exist"
    if kind == "dangling link":
        os.symlink(tmp_path / "gone", tmp_path / "dangling")
        return tmp_path / "dangling", "does not exist (a broken symbolic link)"
    if kind == "file":
        (tmp_path / "notes.txt").write_text("a file, not a sweep\n")
        return tmp_path / "notes.txt", "is a file, not a folder"
    (tmp_path / "empty").mkdir()
    return tmp_path / "empty", "no runs under"


def one_error_line(capsys, exit_info) -> str:
    captured = capsys.readouterr()
    assert exit_info.value.code == 2
    assert captured.out == "" and len(captured.err.splitlines()) == 1, captured.err
    assert captured.err.startswith("gmmvit: error: ")
    return captured.err.strip()


@pytest.mark.parametrize("kind", ["absent", "dangling link", "file", "empty folder"])
@pytest.mark.parametrize("reader", sorted(SWEEP_READERS))
def test_a_sweep_reader_refuses_a_path_without_runs_in_one_line(tmp_path, capsys, reader, kind):
    path, words = bad_path(tmp_path, kind)
    with pytest.raises(SystemExit) as exit_info:
        SWEEP_READERS[reader]([str(path)])
    line = one_error_line(capsys, exit_info)
    assert str(path) in line and words in line and "give a sweep folder (multirun/NAME)" in line


def test_a_sweep_reader_refuses_a_bad_path_before_writing_for_a_good_one(tmp_path, capsys):
    good = unlogged_run(tmp_path / "multirun" / "good" / "run").parent
    with pytest.raises(SystemExit) as exit_info:
        table.main([str(good), str(tmp_path / "nowhere")])
    assert "nowhere does not exist" in one_error_line(capsys, exit_info)
    assert not list(good.glob("table*"))


def hydra_run(folder):
    """``unlogged_run`` with the ``.hydra/`` Hydra writes beside it: its config unresolved, ``${hydra:...}``
    and all, and a run's own subfolders."""
    unlogged_run(folder)
    (folder / ".hydra").mkdir()
    (folder / ".hydra" / "config.yaml").write_text("seed: 0\nrun_dir: ${hydra:runtime.output_dir}\n"
                                                   "paths:\n  data: ${hydra:runtime.cwd}/data\n")
    (folder / "eval").mkdir()
    return folder


RUN_READERS = dict(SWEEP_READERS, eval=evaluation.main, locality=locality.main)


@pytest.mark.parametrize("inside", [".hydra", "eval"])
@pytest.mark.parametrize("reader", sorted(RUN_READERS))
def test_a_reader_pointed_inside_a_run_folder_names_the_run_in_one_line(tmp_path, capsys, reader, inside):
    run = hydra_run(tmp_path / "multirun" / "plain" / "run")
    with pytest.raises(SystemExit) as exit_info:
        RUN_READERS[reader]([str(run / inside)])
    assert f"{run / inside} is a folder inside the run folder {run}; " in one_error_line(capsys, exit_info)
    assert not list(run.parent.glob("table*")) and not list((run / "eval").iterdir())


def test_a_reader_pointed_at_a_checkout_reads_its_runs_and_takes_no_hydra_config_for_one(tmp_path, capsys):
    shutil.copytree(REPO / "conf", tmp_path / "conf")  # conf/config.yaml: a defaults list, no run's record
    (tmp_path / ".venv" / "lib").mkdir(parents=True)
    (tmp_path / ".venv" / "lib" / "config.yaml").write_text("seed: 0\n")
    sweep = unlogged_run(tmp_path / "multirun" / "plain" / "run").parent
    assert table.main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"## plain: best test top-1 (%)  ({sweep})" in out and "conf" not in out and ".venv" not in out


def test_a_table_of_run_folders_is_printed_and_leaves_the_sweeps_table_as_it_was(tmp_path, capsys):
    sweep = unlogged_run(tmp_path / "multirun" / "plain" / "seed0").parent
    config = yaml.safe_load((unlogged_run(sweep / "seed1") / "config.yaml").read_text())
    (sweep / "seed1" / "config.yaml").write_text(yaml.safe_dump(dict(config, seed=1)))
    assert table.main([str(sweep)]) == 0
    whole = (sweep / "table.md").read_text()
    capsys.readouterr()
    assert table.main([str(sweep / "seed1")]) == 0
    out = capsys.readouterr().out
    assert "Runs: 1 finished." in out and f"(not written: 1 run folder of {sweep} was named" in out
    assert (sweep / "table.md").read_text() == whole and "Runs: 2 finished." in whole


def test_a_dashboard_given_run_folders_of_a_sweep_is_refused_in_one_line(tmp_path, capsys):
    sweep = unlogged_run(tmp_path / "multirun" / "plain" / "run").parent
    with pytest.raises(SystemExit) as exit_info:
        dashboard.main([str(sweep / "run")])
    assert one_error_line(capsys, exit_info).endswith(f"give the sweep: make dashboard SWEEP={sweep}")


@pytest.mark.parametrize("kind", ["absent", "file", "empty folder"])
def test_records_upgrade_refuses_a_folder_without_checkpoints_in_one_line(tmp_path, capsys, kind):
    path, words = bad_path(tmp_path, kind)
    words = "holds no checkpoint.pt or checkpoint.prev.pt" if kind == "empty folder" else words
    with pytest.raises(SystemExit) as exit_info:
        records.main(["upgrade", str(path)])
    line = one_error_line(capsys, exit_info)
    assert str(path) in line and words in line and "give a run folder" in line


@pytest.mark.parametrize("argv", [["--select", "best"], ["--stale-after", "soon"], ["--no-such-flag"],
                                  ["--final", "--select", "val"]])
def test_a_bad_flag_is_one_line_not_usage_and_a_line(tmp_path, capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        table.main([str(tmp_path), *argv])
    assert "python -m gmmvit.sweeps.table" in one_error_line(capsys, exit_info)


def test_a_preview_into_a_missing_folder_is_refused_before_anything_is_built(tmp_path, capsys):
    sweep = unlogged_run(tmp_path / "multirun" / "plain" / "run").parent
    target = tmp_path / "nowhere" / "view.png"
    with pytest.raises(SystemExit) as exit_info:
        dashboard.main([str(sweep), "--preview", str(target)])
    line = one_error_line(capsys, exit_info)
    assert f"--preview {target}: folder {target.parent} does not exist" in line


def test_a_preview_of_several_sweeps_is_refused_before_any_is_built(tmp_path, capsys):
    multirun = tmp_path / "multirun"
    for name in ("first", "second"):
        unlogged_run(multirun / name / "run")
    with pytest.raises(SystemExit) as exit_info:
        dashboard.main([str(multirun), "--preview", str(tmp_path / "view.png")])
    line = one_error_line(capsys, exit_info)
    assert "--preview draws one sweep's view, and 2 sweeps were found" in line and "make dashboard SWEEP=" in line
    assert not (tmp_path / "view.png").exists()


def test_a_preview_of_an_unlogged_sweep_says_there_is_nothing_to_build(tmp_path, capsys):
    sweep = unlogged_run(tmp_path / "multirun" / "plain" / "run").parent
    assert dashboard.main([str(sweep), "--preview", str(tmp_path / "view.png")]) == 0
    assert capsys.readouterr().out.strip() == (f"[gmmvit] W&B dashboard: {sweep} was not logged to W&B "
                                               "(logger=none); nothing to build")
    assert not (tmp_path / "view.png").exists()


def test_status_of_a_sweep_whose_only_run_is_unreadable_gives_no_eta(tmp_path):
    run = tmp_path / "sweep" / "run"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text('{"status": "fini')
    tail = sweep_status(run.parent, [read_any(run)]).splitlines()[-1]
    assert tail == "1 unreadable; sweep ETA unknown (fix or delete the unreadable runs)"


PRINTING_COMMANDS = {
    "table": lambda tmp: ["gmmvit.sweeps.table", str(unlogged_run(tmp / "multirun" / "plain" / "run").parent)],
    "paper DRY=1": lambda tmp: ["gmmvit.config.paper_grid", "--dry", "--models", "vit", "--masks", "none",
                                "--datasets", "cifar10", "--multirun", str(tmp / "multirun")],
    "ablations DRY=1": lambda tmp: ["gmmvit.config.ablations", "--dry", "--only", "placement",
                                    "--multirun", str(tmp / "multirun")],
}


@pytest.mark.parametrize("command", sorted(PRINTING_COMMANDS))
def test_a_command_piped_into_a_reader_that_stops_early_ends_quietly(tmp_path, command):
    proc = subprocess.Popen([sys.executable, "-m", *PRINTING_COMMANDS[command](tmp_path)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # `| head` gone before the table is printed
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 0 and "Traceback" not in err, err
