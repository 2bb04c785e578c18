"""dataset.val_fraction: a class-balanced, seeded hold-out of the training set, validated every epoch;
the run records the test top-1 at the best validation epoch, and make table selects on it."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

from conftest import compose_cfg
from gmmvit.data.datasets import Digits
from gmmvit.data.sampling import hold_out, split_targets
from gmmvit.errors import ConfigError
from gmmvit.run.selection import load_weights
from gmmvit.run.train import train
from gmmvit.sweeps import folders, table as table_lib
from gmmvit.sweeps.status import sweep_status

TINY = ["dataset=digits", "model.depth=1", "model.embed_dim=32", "model.num_heads=2", "recipe.batch_size=32",
        "recipe.epochs=3", "recipe.warmup_epochs=0", "recipe.passes_per_epoch=1", "limit_train=256",
        "limit_test=96", "threads=1", "logger=none", "dataset.val_fraction=0.1"]


@pytest.fixture(scope="module")
def clean_training(tmp_path_factory, data_dir):
    """(sweep folder, what its training printed): none and gmm, each holding out a tenth."""
    sweep = tmp_path_factory.mktemp("clean") / "sweep"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        for mask in ("none", "gmm"):
            train(compose_cfg([*TINY, f"mask={mask}"], run_dir=sweep / f"mask={mask}", data_dir=data_dir))
    return sweep, printed.getvalue()


@pytest.fixture(scope="module")
def clean_sweep(clean_training):
    return clean_training[0]


def _final(run):
    return json.loads((run / "metrics.json").read_text())["final"]


def _at_best_val(final) -> str:
    """How every line a user reads states a clean-protocol run's result."""
    return (f"test top-1 {final['test_top1_at_best_val']:.2f} at the best val top-1 {final['best_val_top1']:.2f} "
            f"(epoch {final['best_val_epoch'] + 1}/3)")


def test_the_hold_out_takes_the_fraction_of_every_class_and_leaves_the_rest_to_train():
    digits = Digits(train=True)
    rest, val = hold_out(digits, 0.1, seed=0)
    counts = np.bincount(split_targets(digits))
    assert np.array_equal(np.bincount(split_targets(val)), np.round(0.1 * counts).astype(int))
    assert not set(rest.indices) & set(val.indices) and len(rest) + len(val) == len(digits)


def test_the_hold_out_depends_on_the_seed_alone():
    assert hold_out(Digits(train=True), 0.1, seed=3)[1].indices == hold_out(Digits(train=True), 0.1, seed=3)[1].indices
    assert hold_out(Digits(train=True), 0.1, seed=3)[1].indices != hold_out(Digits(train=True), 0.1, seed=4)[1].indices


def test_val_fraction_zero_is_the_papers_protocol_without_a_validation_split():
    digits = Digits(train=True)
    assert hold_out(digits, 0.0) == (digits, None)
    with pytest.raises(ConfigError, match="dataset.val_fraction"):
        hold_out(digits, 1.0)


def test_a_run_records_val_top1_per_epoch_and_the_test_top1_at_the_best_validation_epoch(clean_sweep):
    metrics = json.loads((clean_sweep / "mask=gmm" / "metrics.json").read_text())
    history, final = metrics["history"], metrics["final"]
    assert all("val_top1" in row for row in history)
    best = max(history, key=lambda r: r["val_top1"])
    assert final["best_val_epoch"] == best["epoch"] and final["test_top1_at_best_val"] == best["test_top1"]
    assert load_weights(clean_sweep / "mask=gmm" / "best.pt")["epoch"] == best["epoch"]
    assert metrics["best"]["metric"] == "val_top1"


def test_a_run_with_a_validation_split_finishes_on_the_test_top1_at_its_best_validation_epoch(clean_training):
    sweep, printed = clean_training
    for mask in ("none", "gmm"):
        assert f"mask={mask} finished: {_at_best_val(_final(sweep / f'mask={mask}'))}, final " in printed
    assert "best top-1" not in printed  # the test-selected number is the one the protocol keeps out


def test_each_epoch_line_of_a_run_with_a_validation_split_shows_the_validation_top1(clean_training):
    sweep, printed = clean_training
    history = json.loads((sweep / "mask=gmm" / "metrics.json").read_text())["history"]
    for row in history:
        assert f"mask=gmm epoch {row['epoch'] + 1}/3 loss {row['train_loss']:.4f} top-1 {row['test_top1']:.2f} " \
            f"val top-1 {row['val_top1']:.2f} lr " in printed


def test_relaunching_a_finished_run_with_a_validation_split_names_its_clean_result(clean_sweep, data_dir, capsys):
    run = clean_sweep / "mask=gmm"
    train(compose_cfg([*TINY, "mask=gmm"], run_dir=run, data_dir=data_dir))
    assert f"already finished: {_at_best_val(_final(run))}; skipping" in capsys.readouterr().out


def test_make_status_names_the_clean_result_of_a_finished_run_with_a_validation_split(clean_sweep):
    text = sweep_status(*folders.collect_sweeps([clean_sweep]).popitem())
    for mask in ("none", "gmm"):
        assert f"finished, {_at_best_val(_final(clean_sweep / f'mask={mask}'))}" in text


def test_a_hold_out_that_leaves_no_full_batch_names_the_validation_share_as_the_fix(tmp_path, data_dir):
    # 0.999 of every digits class rounds to all of it; the preflight's bound lets it through
    cfg = compose_cfg([*TINY, "limit_train=null", "dataset.val_fraction=0.999", "recipe.batch_size=1"],
                      run_dir=tmp_path / "run", data_dir=data_dir)
    with pytest.raises(ConfigError) as refused:
        train(cfg)
    assert str(refused.value) == ("no full batch of 1 in the 0 training images left by dataset.val_fraction=0.999; "
                                  "lower recipe.batch_size or lower dataset.val_fraction")


def test_make_table_prints_the_papers_protocol_then_the_clean_one(clean_sweep, capsys):
    assert table_lib.main([str(clean_sweep)]) == 0
    out = capsys.readouterr().out
    assert out.index("best test top-1") < out.index("test top-1 at the best validation epoch")
    assert "`--select val` (the clean protocol)" in out
    assert (clean_sweep / "table.md").is_file() and (clean_sweep / "table_val.md").is_file()


def test_each_tables_note_says_which_split_selects_the_epoch_and_that_the_cell_is_test_top1(clean_sweep):
    assert table_lib.main([str(clean_sweep)]) == 0
    test_selected, val_selected = ((clean_sweep / name).read_text() for name in ("table.md", "table_val.md"))
    assert "the epoch is selected on the test set and the cell is the best test top-1" in test_selected
    assert ("the epoch is selected on a validation split held out of the training set" in val_selected
            and "the cell is the test top-1 at that epoch" in val_selected)
    assert "there is no validation split" not in test_selected + val_selected  # these runs hold one out
    assert "test top-1 at that epoch" in (clean_sweep / "table_val.tex").read_text()


def test_select_val_cells_are_the_test_top1_at_the_best_validation_epoch(clean_sweep):
    runs = folders.collect([clean_sweep])[clean_sweep]
    _, t = table_lib.build(clean_sweep, runs, "val", write=False)
    at_best_val = json.loads((clean_sweep / "mask=none" / "metrics.json").read_text())["final"]["test_top1_at_best_val"]
    assert t.cell("vit", "none", (), "digits").values == [(0, at_best_val)]


def test_select_rejects_an_unknown_selection_in_one_line(clean_sweep, capsys):
    with pytest.raises(SystemExit) as exit_:
        table_lib.main([str(clean_sweep), "--select", "best"])
    assert exit_.value.code == 2 and "--select takes test, val, final" in capsys.readouterr().err


def test_the_clean_preset_holds_out_a_tenth_in_a_sweep_of_its_own():
    cfg = compose_cfg(["experiment=demo", "+experiment@_global_=protocol/clean"])
    assert cfg.dataset.val_fraction == 0.1 and cfg.sweep == "protocol_clean"
