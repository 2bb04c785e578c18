"""`make bench` in CI size: the report's tables have the expected rows and columns."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gmmvit import catalog
from gmmvit.bench import machine, report, suite

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "bench.md"
    cmd = [sys.executable, "-m", "gmmvit.bench", "--tiny", "--models", "vit", "--masks", "none,gmm",
           "--out", str(out)]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", "")}
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=170, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout, out.read_text()


def test_tiny_bench_prints_command_machine_and_step_table(tiny_report):
    stdout, written = tiny_report
    assert written in stdout                              # --out writes the same markdown
    assert "python -m gmmvit.bench --tiny --models vit --masks none,gmm" in stdout
    machine = next(line for line in stdout.splitlines() if line.startswith("- machine:"))
    assert "CPU" in machine and "torch threads" in machine and "torch 2." in machine and "GPU" in machine
    header, rows = report.parse_markdown_table(stdout, "model")
    assert header == report.STEP_HEADER
    assert [(r[0], r[1]) for r in rows] == [("vit", "none"), ("vit", "gmm")]
    none, gmm = rows
    assert float(none[2].replace(",", "")) > 0 and float(gmm[2].replace(",", "")) > 0
    assert none[4] == "-" and gmm[4].endswith("%")        # the mask's overhead over the same model
    assert none[5] == "110" and gmm[5] == "106"           # the authors' figures (gmmvit.paper) beside ours
    assert gmm[6] == "+3.8%"
    assert none[7] == "2,692,426"                         # the paper's ViT, built through the config


def test_tiny_bench_loader_table_has_every_dataset(tiny_report):
    stdout, _ = tiny_report
    header, rows = report.parse_markdown_table(stdout, "dataset")
    assert header == report.LOADER_HEADER
    datasets = [r[0] for r in rows]
    assert datasets == machine.available(catalog.DATASETS, "dataset")
    for r in rows:
        assert "error" not in r, r
        assert all(float(c.replace(",", "")) > 0 for c in r[2:6])
    cifar = rows[datasets.index("cifar10")]
    assert cifar[1] == "3x32x32" and "4,300" in cifar[6]
    assert "End-to-end" not in stdout                     # no GPU here: no epoch table


def test_render_marks_failures_without_losing_rows():
    steps = [{"model": "vit", "mask": "none", "img_s": 100.0, "step_ms": 1280.0, "params": 1},
             {"model": "vit", "mask": "gmm", "error": "RuntimeError: boom"}]
    text = report.render("cmd", "machine", "settings", steps, [], [])
    _, rows = report.parse_markdown_table(text, "model")
    assert rows[1][:3] == ["vit", "gmm", "error"] and "boom" in rows[1][-1]


def refusal(capsys, argv) -> str:
    with pytest.raises(SystemExit) as stop:
        suite.main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and len(err.strip().splitlines()) == 1, err
    return err


def test_unknown_model_is_one_line_error(capsys):
    assert "'nosuch' is not a model here" in refusal(capsys, ["--models", "nosuch", "--no-loader"])


@pytest.mark.parametrize("flag, value, says", [
    ("--fused", "abc", "sizes as whole numbers >= 1"), ("--fused", "0", "sizes as whole numbers >= 1"),
    ("--masks", "gmn", "'gmn' is not a mask here"), ("--fused-mask", "foo", "'foo' is not a mask here"),
    ("--fused-model", "vitt", "invalid choice: 'vitt'"), ("--datasets", "cifar", "'cifar' is not a dataset here"),
    ("--precision", "fp16", "invalid choice: 'fp16'"), ("--attention", "sdpa", "invalid choice: 'sdpa'"),
    ("--steps", "0", "whole number >= 1"), ("--batch", "x", "whole number >= 1"), ("--device", "gpu", "cuda:N"),
    ("--compile", "fast", "compile must be auto, true, false"),
    ("--out", "no/such/folder/bench.md", "give a file in a writable folder that exists")])
def test_a_bench_flag_value_it_cannot_take_is_one_line_naming_the_flag_and_exit_2(capsys, flag, value, says):
    err = refusal(capsys, ["--no-loader", "--no-steps", flag, value])
    assert f"argument {flag}:" in err and says in err


def test_tiny_sets_the_ci_size_only_where_no_flag_beside_it_does():
    args = suite.parse_args(["--tiny", "--steps", "3", "--fused", "1,2,4"])
    assert (args.steps, args.fused, args.batch, args.warmup, args.loader_images) == (3, [1, 2, 4], 8, 1, 32)
    assert (suite.parse_args([]).steps, suite.parse_args([]).fused) == (10, [1, 2, 4])


def test_a_fused_mask_mix_whose_runs_do_not_stack_is_refused_in_one_line(capsys):
    # ViT's plain runs keep a class token its masked ones drop: a sweep fuses them apart
    err = refusal(capsys, ["--no-loader", "--no-steps", "--fused", "2", "--fused-mask", "none,gmm"])
    assert "vit's none and gmm runs do not stack" in err
    assert suite.parse_args(["--fused", "2", "--fused-model", "swin", "--fused-mask", "none,gmm"]).fused_mask == "none,gmm"


def test_an_error_over_many_lines_stays_one_cell_of_its_table():
    steps = [{"model": "vit", "mask": "none", "img_s": 100.0, "step_ms": 1280.0, "params": 1},
             {"model": "vit", "mask": "gmm", "error": "MissingConfigException: no 'mask/x'\nAvailable | options"}]
    text = report.render("cmd", "machine", "settings", steps, [], [])
    header, rows = report.parse_markdown_table(text, "model")
    assert len(rows) == 2 and len(rows[1]) == len(header) and rows[1][-1] == "MissingConfigException: no 'mask/x'"


def test_side_by_side_columns_give_the_authors_speed_and_overhead_measured_alongside():
    steps = [{"model": "vit", "mask": "none", "img_s": 100.0, "step_ms": 1280.0, "params": 1, "authors_img_s": 80.0},
             {"model": "vit", "mask": "gmm", "img_s": 96.0, "step_ms": 1333.3, "params": 1, "authors_img_s": 76.0}]
    header, rows = report.parse_markdown_table(report.render("cmd", "machine", "settings", steps, [], []), "model")
    assert header == report.STEP_HEADER + report.SIDE_BY_SIDE_HEADER
    none, gmm = rows
    assert none[-3:] == ["80.0", "-", "1.25x"]
    assert gmm[-3:] == ["76.0", "+5.3%", "1.26x"]


def test_authors_option_without_their_checkout_is_one_line_error(tmp_path, capsys):
    assert "no models/create_model.py" in refusal(capsys, ["--models", "vit", "--no-loader", "--authors", str(tmp_path)])


def test_tiny_bench_prints_fused_throughput_for_each_group_size(tiny_report):
    stdout, _ = tiny_report
    header, rows = report.parse_markdown_table(stdout.split("### Fused runs")[1], "model")
    assert header[:5] == ["model", "mask", "members", "img/s, all members", "img/s per member"]
    assert [(r[0], r[1], r[2]) for r in rows] == [("vit", "gmm", "1"), ("vit", "gmm", "2")]
    for r in rows:  # all members' images over the same steps: G x the per-member rate, as printed to 0.1
        members = int(r[2])
        assert float(r[3].replace(",", "")) == pytest.approx(members * float(r[4].replace(",", "")), rel=0.01,
                                                             abs=0.05 * (members + 1))


def test_a_fused_row_names_the_masks_its_members_took_not_the_list_they_take_in_turn():
    from gmmvit.bench.fused_rate import time_fused_steps

    small = ["model.depth=1", "model.embed_dim=32", "model.num_heads=2"]
    rows = time_fused_steps("vit", "gmm,elm", sizes=[1, 2], batch=2, steps=1, warmup=0, overrides=small)
    assert [(r["members"], r["mask"]) for r in rows] == [(1, "gmm"), (2, "gmm,elm")]
