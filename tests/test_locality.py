"""Attention locality: the mean attention distance of hand-made maps is the hand-computed value,
every architecture reports its layers on their own grids, and a real sweep gets its JSON and figure."""

from __future__ import annotations

import csv
import json
import math
import shutil
import time

import pytest
import torch

from conftest import compose_cfg
from gmmvit.config.locality import main, measure
from gmmvit.errors import ConfigError
from gmmvit.nn.attention import use_attention
from gmmvit.nn.locality import AttentionLocality, LayerTally, query_distances, uniform_distance
from gmmvit.run import runlock, tracking
from gmmvit.run.locality import locality_path
from gmmvit.run.train import build_model, train
from gmmvit.sweeps.locality import FIGURE, TABLE, sweep_figure
from test_tracking import no_wandb_account, read_complete  # noqa: F401 (a fixture)

TINY = ["dataset=digits", "model.depth=1", "model.embed_dim=32", "model.num_heads=2", "recipe.batch_size=32",
        "recipe.epochs=1", "recipe.warmup_epochs=0", "recipe.passes_per_epoch=1", "limit_train=128",
        "limit_test=64", "threads=1", "logger=none"]


def test_distance_of_a_hand_made_map_is_the_hand_computed_value():
    # 2x2 grid, tokens (0,0) (0,1) (1,0) (1,1): query 0 puts 0.5 on itself, 0.25 on each neighbour;
    # query 3 puts all of it on the opposite corner, sqrt(2) away
    attn = torch.tensor([[0.5, 0.25, 0.25, 0.0],
                         [0.0, 1.0, 0.0, 0.0],
                         [0.0, 0.0, 0.5, 0.5],
                         [1.0, 0.0, 0.0, 0.0]])[None, None]
    distance, _ = query_distances(attn)
    assert distance[0, 0].tolist() == pytest.approx([0.5, 0.0, 0.5, math.sqrt(2)])


def test_class_token_is_left_out_as_query_and_key_and_its_share_reported():
    # a class token first: it takes 0.2 of query 1's attention; the rest, 0.4 at distance 0 and
    # 0.4 at distance 1, renormalised over the grid gives 0.5
    attn = torch.zeros(1, 1, 5, 5)
    attn[0, 0, 0] = 0.2
    attn[0, 0, 1:, 0] = 0.2
    attn[0, 0, 1:, 1:] = 0.2
    attn[0, 0, 1, 1:] = torch.tensor([0.4, 0.4, 0.0, 0.0])
    distance, share = query_distances(attn, prefix=1)
    assert distance.shape == (1, 1, 4) and distance[0, 0, 0].item() == pytest.approx(0.5)
    assert share[0, 0].tolist() == pytest.approx([0.2] * 4)


@pytest.mark.parametrize("grid, expected", [(2, (2 + math.sqrt(2)) / 4),
                                            (3, (48 + 24 * math.sqrt(2) + 16 * math.sqrt(5)) / 81)])
def test_uniform_attention_over_a_grid_gives_the_known_mean_distance(grid, expected):
    n = grid * grid
    tally = LayerTally(prefix=0)
    tally.add(torch.full((3, 2, n, n), 1.0 / n))
    summary = tally.summary()
    assert summary["heads"] == pytest.approx([expected, expected])
    assert summary["uniform"] == pytest.approx(expected) == uniform_distance(grid)


# (model, layer grids): Swin within its 4x4 windows, PiT per stage, CaiT's 24 patch layers only
# (not its class attention), T2T's token transformer (16x16) then its blocks
ARCHITECTURES = [("vit", [8] * 9), ("swin", [4] * 12), ("cait", [8] * 24), ("pit", [16] * 2 + [8] * 6 + [4] * 4),
                 ("t2t", [16] + [8] * 12)]


@pytest.mark.parametrize("model, grids", ARCHITECTURES)
def test_every_architecture_reports_each_attention_layer_on_its_own_grid(model, grids):
    torch.manual_seed(0)
    net = use_attention(build_model(compose_cfg([f"model={model}", "mask=gmm", "dataset=digits"])).eval(), "explicit")
    with torch.no_grad(), AttentionLocality(net) as locality:
        net(torch.randn(1, 1, 32, 32))
    layers = locality.layers()
    assert [layer["grid"] for layer in layers] == grids
    assert all(0 < layer["mean"] < 2 * layer["uniform"] and layer["gmm"] for layer in layers)


def test_the_class_token_of_plain_vit_is_a_prefix_token():
    net = use_attention(build_model(compose_cfg(["model=vit", "mask=none", "dataset=digits"])).eval(), "explicit")
    with torch.no_grad(), AttentionLocality(net) as locality:
        net(torch.randn(1, 1, 32, 32))
    assert {(layer["prefix"], len(layer["prefix_share"])) for layer in locality.layers()} == {(1, 12)}


def test_observers_are_gone_after_the_analysis_and_a_fused_path_is_refused_in_one_line():
    net = build_model(compose_cfg(["model=vit", "mask=none", "dataset=digits"])).eval()
    with torch.no_grad(), AttentionLocality(net) as locality:
        net(torch.randn(1, 1, 32, 32))
    assert all(block.attn.observer is None for block in net.blocks)
    with pytest.raises(ConfigError, match="explicit path"):
        locality.layers()


@pytest.fixture(scope="module")
def measured_sweep(tmp_path_factory, data_dir):
    sweep = tmp_path_factory.mktemp("locality") / "sweep"
    for mask in ("none", "gmm"):
        train(compose_cfg(TINY + [f"mask={mask}"], run_dir=sweep / f"mask={mask}", data_dir=data_dir))
    return sweep, measure(sweep, images=48)


def test_a_real_sweep_gets_a_json_per_run_and_its_figure(measured_sweep):
    sweep, figures = measured_sweep
    assert figures == [sweep / FIGURE] and figures[0].stat().st_size > 0
    gmm = json.loads(locality_path(sweep / "mask=gmm").read_text())
    none = json.loads(locality_path(sweep / "mask=none").read_text())
    assert gmm["images"] == 48 and gmm["checkpoint"] == "best"
    assert len(gmm["layers"]) == 1 and len(gmm["layers"][0]["heads"]) == 2
    assert len(gmm["layers"][0]["gmm"]["sigma"]) == 5 and none["layers"][0]["gmm"] is None
    rows = list(csv.DictReader(open(sweep / TABLE)))
    assert sorted({r["mask"] for r in rows}) == ["gmm", "none"] and len(rows) == 4


def test_each_runs_json_records_the_file_its_weights_came_from(measured_sweep):
    sweep, _ = measured_sweep
    assert json.loads(locality_path(sweep / "mask=none").read_text())["weights"] == "best.pt"


def test_runs_that_differ_in_a_setting_besides_the_seed_get_lines_of_their_own(measured_sweep, tmp_path):
    sweep = tmp_path / "sweep"
    shutil.copytree(measured_sweep[0] / "mask=none", sweep / "mask=none,model.pool=auto")
    shutil.copytree(measured_sweep[0] / "mask=none", sweep / "mask=none,model.pool=token")
    config = sweep / "mask=none,model.pool=token" / "config.yaml"
    config.write_text(config.read_text().replace("pool: auto", "pool: token"))
    sweep_figure(sweep, sorted(sweep.iterdir()))
    variants = {r["variant"] for r in csv.DictReader(open(sweep / TABLE))}
    assert variants == {" [model.pool=auto]", " [model.pool=token]"}


def test_make_locality_takes_its_overrides_after_the_checkpoint_option(measured_sweep):
    sweep, _ = measured_sweep
    assert main([str(sweep / "mask=gmm"), "--ckpt", "last", "--images", "16", "threads=1"]) == 0
    assert json.loads(locality_path(sweep / "mask=gmm").read_text())["images"] == 16


def test_make_locality_on_a_run_ends_naming_the_file_it_wrote(measured_sweep, tmp_path, capsys):
    run_dir = tmp_path / "mask=none"   # a copy: the other tests read the sweep's own measure
    shutil.copytree(measured_sweep[0] / "mask=none", run_dir)
    assert main([str(run_dir), "--images", "8"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"locality: {locality_path(run_dir)}"


def test_an_override_that_changes_the_network_ends_a_sweep_in_one_line(measured_sweep, capsys):
    with pytest.raises(SystemExit) as ended:
        main([str(measured_sweep[0]), "model.depth=2"])
    assert ended.value.code == 2
    assert "model.depth=2 changes the network" in capsys.readouterr().err


def test_a_refused_override_names_make_locality_the_command_that_was_run(measured_sweep, capsys):
    with pytest.raises(SystemExit):
        main([str(measured_sweep[0]), "model.depth=3"])
    err = capsys.readouterr().err
    assert "make locality takes only overrides that keep it" in err and "make eval" not in err


@pytest.mark.parametrize("override, line", [("threads=-2", "threads=-2: threads must be >= 0"),
                                            ("recipe.batch_size=0", "recipe.batch_size=0: recipe.batch_size must be >= 1")])
def test_an_override_out_of_its_range_ends_a_sweep_in_one_line(measured_sweep, override, line, capsys):
    with pytest.raises(SystemExit) as ended:
        main([str(measured_sweep[0]), override])
    err = capsys.readouterr().err
    assert ended.value.code == 2 and err.startswith(f"gmmvit: error: {measured_sweep[0]}/") and err.count("\n") == 1
    assert err.endswith(f": {line}\n")  # naming the first run it was checked against, before any was measured


@pytest.mark.parametrize("override, line", [
    ("limit_test=8", "limit_test=8: make locality measures the first --images test images; give --images N instead"),
    ("attention=sdpa", "attention=sdpa: make locality reads the attention maps on the explicit path, whatever "
                       "attention= says; drop it"),
])
@pytest.mark.parametrize("target", ["run", "sweep"])
def test_an_override_make_locality_would_ignore_is_refused_in_one_line(measured_sweep, capsys, override, line, target):
    sweep = measured_sweep[0]
    with pytest.raises(SystemExit) as ended:
        main([str(sweep / "mask=gmm" if target == "run" else sweep), override])
    assert ended.value.code == 2 and capsys.readouterr().err == f"gmmvit: error: {line}\n"


def test_an_override_of_a_key_make_locality_does_not_read_is_refused_in_one_line(measured_sweep, capsys):
    with pytest.raises(SystemExit) as ended:
        main([str(measured_sweep[0] / "mask=gmm"), "seed=3"])
    assert ended.value.code == 2
    assert capsys.readouterr().err.startswith("gmmvit: error: seed=3: make locality does not read seed, so it would "
                                              "change nothing the command measures; drop it")


def test_a_missing_folder_ends_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as ended:
        main([str(tmp_path / "nowhere")])
    assert ended.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1


def trained_with_wandb(tmp_path, data_dir):
    run_dir = tmp_path / "sweep" / "mask=gmm"
    train(compose_cfg(TINY + ["mask=gmm", "logger=wandb", "logger.mode=offline", "logger.mask_figures=0"],
                      run_dir=run_dir, data_dir=data_dir))
    return run_dir


def without_wandbs_own(config):
    return {k: v for k, v in config.items() if k != "_wandb"}


def test_a_run_with_w_and_b_gets_the_figure_and_its_layer_means_logged(tmp_path, data_dir, no_wandb_account):
    run_dir = trained_with_wandb(tmp_path, data_dir)
    measure(run_dir.parent, images=16)
    deadline = time.time() + 60          # W&B's service may finish writing a moment after finish()
    while time.time() < deadline:
        logged = [tracking.read_offline_run(p) for p in (run_dir / "wandb").glob("offline-run-*")]
        if all(run["complete"] for run in logged) and len(logged) == 2:
            break
        time.sleep(0.5)
    # the analysis resumes the run's W&B id: offline, that is a second log of the same run
    assert {run["run"]["id"] for run in logged} == {json.loads((run_dir / "metrics.json").read_text())["wandb_id"]}
    assert any({"locality/blocks.0.attn", "locality/figure"} <= set(run["summary"]) for run in logged)


def test_the_analysis_logs_to_the_runs_wandb_run_under_the_config_its_training_logged(tmp_path, data_dir,
                                                                                      no_wandb_account):
    run_dir = trained_with_wandb(tmp_path, data_dir)
    [training] = list((run_dir / "wandb").glob("offline-run-*"))
    measure(run_dir.parent, images=16, overrides=["precision=fp32", "threads=2"])
    [analysis] = [p for p in (run_dir / "wandb").glob("offline-run-*") if p != training]
    trained, analysed = read_complete(training), read_complete(analysis)
    assert "locality/figure" in analysed["summary"]
    assert without_wandbs_own(analysed["config"]) == without_wandbs_own(trained["config"])
    assert trained["config"]["threads"] == 1 and "environment.commit" in trained["config"]


def test_a_run_a_trainer_holds_measured_on_its_own_gets_its_json_and_its_wandb_run_is_left_alone(
        tmp_path, data_dir, no_wandb_account):
    run_dir = trained_with_wandb(tmp_path, data_dir)
    before = set((run_dir / "wandb").glob("offline-run-*"))
    with runlock.acquire(run_dir):  # what a trainer holds while it trains the run
        measure(run_dir, images=16)
    assert set((run_dir / "wandb").glob("offline-run-*")) == before
    assert json.loads(locality_path(run_dir).read_text())["images"] == 16


def test_a_sweep_skips_a_finished_run_a_trainer_holds_as_make_eval_does(measured_sweep, tmp_path, capsys):
    sweep = tmp_path / "sweep"
    shutil.copytree(measured_sweep[0], sweep)
    held = sweep / "mask=none"
    with runlock.acquire(held):  # a relaunch rewriting its weights
        figures = measure(sweep, images=16)
    assert figures == [sweep / FIGURE]
    assert f"locality: {held} skipped: held by a trainer (" in capsys.readouterr().out
    assert json.loads(locality_path(sweep / "mask=gmm").read_text())["images"] == 16
    assert json.loads(locality_path(held).read_text())["images"] == 48  # the measure before, left as it was
