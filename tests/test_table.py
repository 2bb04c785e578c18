"""`make table` (python -m gmmvit.sweeps.table) on a sweep of REAL tiny runs made here.

The sweep (ViT shrunk to one block, one epoch of 256 digits images):
  digits: none x seeds 0, 1; gmm x seeds 0, 1 (finished); gmm seed 2 killed before its first
  epoch ended (stopped); elm seed 0 with lr 1e30 (failed: NaN loss); elm seeds 1, 2 missing.
  fashion_mnist: none seed 0 only, so every other cell of that column is missing.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time

import pytest

from conftest import compose_cfg
from gmmvit.run import runlock
from gmmvit.sweeps.status import run_detail, sweep_status
from gmmvit.sweeps import folders, table as table_lib
from gmmvit.run.train import train

TINY = ["model.depth=1", "model.embed_dim=32", "model.num_heads=2", "recipe.epochs=1", "recipe.batch_size=64",
        "recipe.warmup_epochs=0", "recipe.passes_per_epoch=1", "limit_train=256", "limit_test=128", "threads=1",
        "logger=none", "sweep=tabletest"]
SILENT_S = 7 * 3600
T_975 = {1: 12.706, 2: 4.303, 3: 3.182}     # t quantiles for n-1 degrees of freedom


class Killed(BaseException):
    """Stands for SIGKILL: nothing in the trainer sees it, so nothing records how the run ended."""


def _run(sweep, name, overrides, data_dir):
    cfg = compose_cfg([*TINY, *overrides], run_dir=sweep / name, data_dir=data_dir)
    return train(cfg)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, data_dir):
    sweep = tmp_path_factory.mktemp("tables") / "sweep"
    for mask in ("none", "gmm"):
        for seed in (0, 1):
            assert _run(sweep, f"mask={mask},seed={seed}", ["dataset=digits", f"mask={mask}", f"seed={seed}"],
                        data_dir)["status"] == "finished"
    failed = _run(sweep, "mask=elm,seed=0", ["dataset=digits", "mask=elm", "seed=0",
                                             "recipe.optimizer.lr=1e30"], data_dir)
    assert failed["status"] == "failed" and "loss became" in failed["reason"]
    # a job killed during its first epoch: config.yaml and a "running" metrics.json, no epoch done
    import gmmvit.run.train as train_mod

    def killed(*a, **k):
        raise Killed()

    original, train_mod.evaluate = train_mod.evaluate, killed
    try:
        with pytest.raises(Killed):
            _run(sweep, "mask=gmm,seed=2", ["dataset=digits", "mask=gmm", "seed=2"], data_dir)
    finally:
        train_mod.evaluate = original
    silent_since = time.time() - SILENT_S          # and silent since: longer than any first epoch
    for f in ("metrics.json", "config.yaml"):
        os.utime(sweep / "mask=gmm,seed=2" / f, (silent_since, silent_since))
    assert _run(sweep, "dataset=fashion_mnist,mask=none,seed=0",
                ["dataset=fashion_mnist", "mask=none", "seed=0"], data_dir)["status"] == "finished"
    return sweep


def _metrics(sweep, name):
    return json.loads((sweep / name / "metrics.json").read_text())


def _csv_rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def _row(rows, mask, dataset, kind="accuracy"):
    [r] = [r for r in rows if r["mask"] == mask and r["dataset"] == dataset and r["row"] == kind]
    return r


def test_table_numbers_markings_and_files(sweep, capsys):
    assert table_lib.main([str(sweep)]) == 0
    printed = capsys.readouterr().out
    for name in table_lib.OUTPUTS:
        assert (sweep / name).is_file() and (sweep / name).stat().st_size > 0, name
    md = (sweep / "table.md").read_text()
    assert md in printed

    rows = _csv_rows(sweep / "table.csv")
    best = {(m, s): _metrics(sweep, f"mask={m},seed={s}")["final"]["best_top1"] for m in ("none", "gmm")
            for s in (0, 1)}
    for mask in ("none", "gmm"):
        values = [best[(mask, 0)], best[(mask, 1)]]
        r = _row(rows, mask, "digits")
        assert int(r["n"]) == 2
        assert float(r["mean"]) == pytest.approx(statistics.mean(values))
        assert float(r["std"]) == pytest.approx(statistics.stdev(values))
        text = f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f} (n=2"
        assert text in md
    # the gain, paired by seed, with a 95% t-interval (df = 1)
    diffs = [best[("gmm", s)] - best[("none", s)] for s in (0, 1)]
    mean = sum(diffs) / 2
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1))
    half = T_975[1] * sd / math.sqrt(2)
    g = _row(rows, "gmm", "digits", "gain_vs_none")
    assert int(g["n"]) == 2
    assert float(g["mean"]) == pytest.approx(mean)
    assert float(g["ci95_low"]) == pytest.approx(mean - half)
    assert float(g["ci95_high"]) == pytest.approx(mean + half)
    assert f"{mean:+.2f} [{mean - half:+.2f}, {mean + half:+.2f}] (n=2)" in md

    # the markings: failed with its reason, missing seeds and cells, the killed run
    reason = _metrics(sweep, "mask=elm,seed=0")["reason"]
    assert f"failed: vit/elm/digits seed 0: {reason}" in md
    assert "missing: vit/elm/digits seed 1, 2" in md
    assert "missing: vit/none/digits seed 2" in md
    assert "stopped: vit/gmm/digits seed 2 (0/1 epochs" in md
    elm = _row(rows, "elm", "digits")
    assert (elm["n"], elm["failed"], elm["missing_seeds"]) == ("0", "1", "1 2")
    gmm = _row(rows, "gmm", "digits")
    assert (gmm["stopped"], gmm["seeds"]) == ("1", "0 1")
    for mask in ("gmm", "elm"):                     # never run on fashion_mnist, where `none` was
        assert _row(rows, mask, "fashion_mnist")["n"] == "0"
        assert f"missing: vit/{mask}/fashion_mnist seed 0" in md
    line = next(l for l in md.splitlines() if l.startswith("| vit | none |"))
    assert "(n=1)" in line.split("|")[3]                 # fashion_mnist column
    gmm_line = next(l for l in md.splitlines() if l.startswith("| vit | gmm |"))
    assert gmm_line.split("|")[3].strip() == "missing"
    assert "selected on the test set" in md
    tex = (sweep / "table.tex").read_text()
    assert "\\toprule" in tex and "\\bottomrule" in tex and "\\midrule" in tex
    assert (sweep / "table.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_final_flag_uses_the_last_epoch(sweep, capsys):
    assert table_lib.main([str(sweep), "--final"]) == 0
    out = capsys.readouterr().out
    assert "last-epoch test top-1" in out and "no selection on the test set" in out
    finals = [_metrics(sweep, f"mask=none,seed={s}")["final"]["final_top1"] for s in (0, 1)]
    assert float(_row(_csv_rows(sweep / "table_final.csv"), "none", "digits")["mean"]) == pytest.approx(
        statistics.mean(finals))


@pytest.mark.parametrize("flags", [["--final"], ["--select", "final"], ["--select", "final,test"]])
def test_table_files_only_ever_hold_the_papers_selection(sweep, tmp_path, flags):
    copy = tmp_path / "sweep"
    shutil.copytree(sweep, copy)
    assert table_lib.main([str(copy)]) == 0
    papers = {name: (copy / name).read_bytes() for name in ("table.md", "table.csv", "table.tex")}
    assert table_lib.main([str(copy), *flags]) == 0
    assert {name: (copy / name).read_bytes() for name in papers} == papers
    assert "last-epoch test top-1" in (copy / "table_final.md").read_text()


def test_val_on_runs_without_a_validation_split_says_how_to_hold_one_out(sweep, tmp_path, capsys):
    copy = tmp_path / "sweep"
    shutil.copytree(sweep, copy)
    assert table_lib.main([str(copy), "--select", "val"]) == 0
    out = capsys.readouterr().out.strip()
    assert out.splitlines() == [f"tabletest ({copy}): --select val has nothing to show, its runs hold no validation "
                                "split; train them with one held out, e.g. dataset.val_fraction=0.1"]
    assert not list(copy.glob("table_val.*"))


def test_running_until_silent_then_stopped(sweep):
    run = sweep / "mask=gmm,seed=2"
    assert folders.read_run(run).state == "stopped"               # silent for 7 h, no epoch done
    assert folders.read_run(run, now=time.time() - SILENT_S + 3600).state == "running"
    assert folders.read_run(run, stale_after=SILENT_S + 3600).state == "running"


def test_a_runs_lock_decides_running_or_stopped_whatever_its_files_age(sweep, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(sweep / "mask=gmm,seed=2", run)              # "running" in metrics.json, silent 7 h
    with runlock.acquire(run):                                    # a live trainer in a very long first epoch
        read = folders.read_run(run)
        assert read.state == "running" and f"pid {os.getpid()}" in read.trainer
        assert f"pid {os.getpid()} on {socket.gethostname()}" in run_detail(read, {})   # make status says where
    (run / "metrics.json").touch()                                # files fresh, but its trainer was killed:
    (run / runlock.LOCK).write_text(json.dumps({"host": socket.gethostname(), "pid": _dead_pid()}))
    assert folders.read_run(run).state == "stopped"          # stopped at once, not after the silence


def test_table_and_status_name_a_stopped_run_with_one_word_and_one_fix(sweep, tmp_path):
    copy = tmp_path / "sweep"
    shutil.copytree(sweep, copy)
    assert table_lib.main([str(copy)]) == 0
    md = (copy / "table.md").read_text()
    [(folder, runs)] = folders.collect([copy]).items()
    said = sweep_status(folder, runs)
    killed = "vit/gmm/digits seed 2"
    [in_table] = [line for line in md.splitlines() if killed in line]
    [in_status] = [line for line in said.splitlines() if killed in line]
    assert in_table.startswith(f"- stopped: {killed} (0/1 epochs, last written ")
    assert in_table.endswith(" ago; relaunch to resume)")
    assert "stopped at 0/1 epochs (relaunch to resume)" in in_status
    assert "incomplete" not in md + said


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_paper_numbers_beside_cells():
    runs = [folders.Run(path=None, model="vit", mask=m, dataset="cifar10", seed=s, state="finished",
                          epochs=1, done=1, best=b, final=b, params=2_692_426, macs=170_000_000)
            for m, s, b in (("none", 0, 93.0), ("none", 1, 94.0), ("gmm", 0, 95.0), ("gmm", 1, 95.5))]
    text, t = table_lib.build(table_lib.Path("unused"), runs, write=False)
    assert "93.50 ± 0.71 (n=2) [paper 93.65, Δ -0.15]" in text
    assert "+1.75 [-1.43, +4.93] (n=2) [paper +1.41, Δ +0.34]" in text
    assert "[paper 2.7M]" in text


def test_nothing_finished_is_one_line(sweep, tmp_path, capsys):
    only = tmp_path / "failed_only"
    shutil.copytree(sweep / "mask=elm,seed=0", only / "mask=elm,seed=0")
    assert table_lib.main([str(only)]) == 0
    out = capsys.readouterr().out.strip()
    assert len(out.splitlines()) == 1 and "nothing finished yet (1 failed)" in out
    assert not (only / "table.md").exists()


def test_a_gain_from_one_pair_shows_its_n_and_no_interval_in_every_form(sweep, tmp_path):
    copy = tmp_path / "sweep"
    shutil.copytree(sweep, copy)
    shutil.rmtree(copy / "mask=gmm,seed=1")                   # gmm pairs with none at seed 0 only
    assert table_lib.main([str(copy)]) == 0
    best = {m: _metrics(copy, f"mask={m},seed=0")["final"]["best_top1"] for m in ("gmm", "none")}
    diff = best["gmm"] - best["none"]
    [md] = [l for l in (copy / "table.md").read_text().splitlines() if "Δ gmm − none" in l]
    assert f"{diff:+.2f} (n=1 pair, no interval)" in md and "n.s." not in md
    [tex] = [l for l in (copy / "table.tex").read_text().splitlines() if "Delta$ gmm" in l]
    assert rf"\textit{{{diff:+.2f}\,{{\scriptsize (1)}}}}" in tex     # not a bare number beside the intervals
    assert "(n) = seeds paired, no interval from one pair" in (copy / "table.tex").read_text()
    g = _row(_csv_rows(copy / "table.csv"), "gmm", "digits", "gain_vs_none")
    assert (g["n"], g["ci95_low"], g["significant"]) == ("1", "", "")


def test_a_run_held_by_two_folders_counts_once_and_is_listed_as_a_twin(sweep, tmp_path, capsys):
    copy = tmp_path / "sweep"
    shutil.copytree(sweep, copy)
    shutil.copytree(copy / "mask=none,seed=0", copy / "mask=none,model.pool=token,seed=0")  # pool=token: vit's default
    assert table_lib.main([str(copy)]) == 0
    out = capsys.readouterr().out
    n = _row(_csv_rows(copy / "table.csv"), "none", "digits")["n"]
    assert n == "2"                                    # seeds 0 and 1, not seed 0 twice
    assert (f"twin: vit/none/digits seed 0: {copy / 'mask=none,seed=0'} holds the same run as "
            f"{copy / 'mask=none,model.pool=token,seed=0'}; counted once, from there") in out


def test_pairs_whose_differences_are_all_equal_give_no_interval_and_no_claim_of_significance():
    from gmmvit.sweeps.cells import Gain
    from gmmvit.sweeps.render import gain_text
    from gmmvit.sweeps.stats import paired_interval

    mean, low, high = paired_interval([-1.5625, -1.5625])   # 1 image of 64, at both seeds
    assert (mean, low, high) == (-1.5625, None, None)
    gain = Gain(n=2, mean=mean, low=low, high=high)
    assert gain.significant is None and gain_text(gain) == "-1.56 (n=2 pairs, all equal: no interval)"
    assert paired_interval([-1.5625, 0.0])[1] is not None
