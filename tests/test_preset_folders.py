"""Presets take part in a run folder's name (``gmmvit.sweeps.expand.run_name``): a run with a preset
and one without never share a folder, while runs without a preset, and preset runs in the sweep
folder the preset names, keep the names they always had (so they resume)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from gmmvit.catalog import CONF
from gmmvit.config import paper_grid
from gmmvit.config import ablations
from gmmvit.sweeps import expand


def hydra_run_dir(overrides: list[str]) -> str:
    """The folder ``python src/train.py <overrides>`` trains in, as Hydra names it."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    from gmmvit.config.resolvers import register_with_hydra

    register_with_hydra()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    assert cfg.hydra.run.dir == f"multirun/{cfg.sweep}/{cfg.hydra.sweep.subdir}"  # a sweep's job: the same folder
    return cfg.hydra.run.dir


@pytest.mark.parametrize("overrides, folder", [
    ([], "multirun/default/defaults"),
    (["mask=gmm", "device=cpu", "threads=1"], "multirun/default/mask=gmm"),
    (["mask=gmm", "mask.sigma_init=[3.0,1.0]", "sweep=s"], "multirun/s/mask.sigma_init=[3.0,1.0],mask=gmm"),
])
def test_a_run_without_a_preset_keeps_the_name_of_its_overrides(overrides, folder):
    assert hydra_run_dir(overrides) == folder


def test_a_forced_override_names_the_folder_its_plain_form_names():
    # ++ is how Hydra applies a key a sweep's default option lacks (model=swin,pit ++model.depths=...)
    plain = hydra_run_dir(["model=swin", "model.depths=[1,1,1]", "sweep=s"])
    assert hydra_run_dir(["model=swin", "++model.depths=[1,1,1]", "sweep=s"]) == plain
    assert plain == "multirun/s/model.depths=[1,1,1],model=swin"


@pytest.mark.parametrize("overrides, folder", [
    (["experiment=demo", "mask=gmm"], "multirun/demo/mask=gmm"),
    (["experiment=ablation/pooling", "mask=gmm", "model.pool=token", "seed=0"],
     "multirun/ablation/pooling/mask=gmm,model.pool=token,seed=0"),
])
def test_a_preset_run_in_the_sweep_folder_the_preset_names_keeps_its_name(overrides, folder):
    assert hydra_run_dir(overrides) == folder


def test_a_preset_in_another_sweep_joins_the_name_so_it_never_meets_a_run_without_it():
    with_demo = hydra_run_dir(["experiment=demo", "sweep=mine", "mask=gmm"])
    without = hydra_run_dir(["sweep=mine", "mask=gmm"])
    assert (with_demo, without) == ("multirun/mine/experiment=demo,mask=gmm", "multirun/mine/mask=gmm")
    assert hydra_run_dir(["experiment=ablation/pooling", "sweep=mine", "mask=gmm"]) == \
        "multirun/mine/experiment=ablation-pooling,mask=gmm"


def test_stacked_presets_each_join_the_name_unless_the_folder_is_their_own():
    assert hydra_run_dir(["experiment=demo", "+experiment@_global_=protocol/clean", "sweep=demo_clean", "mask=gmm"]) \
        == "multirun/demo_clean/experiment=demo,experiment=protocol-clean,mask=gmm"
    assert hydra_run_dir(["experiment=demo", "+experiment@_global_=protocol/clean", "mask=gmm"]) == \
        "multirun/protocol_clean/experiment=demo,mask=gmm"


@pytest.mark.parametrize("sweep", ["paper", "paper_v2"])
def test_make_paper_lists_the_folders_hydra_trains_in(sweep):
    args = argparse.Namespace(
        models="vit", masks="none,gmm", datasets="digits", seeds="0", sweep=sweep, multirun="multirun",
        overrides=["model.depth=1"])
    for job in paper_grid.jobs(args):
        overrides = ["experiment=paper", f"sweep={sweep}", f"model={job['model']}", f"mask={job['mask']}",
                     f"dataset={job['dataset']}", f"seed={job['seed']}", "model.depth=1"]
        assert str(job["dir"]) == hydra_run_dir(overrides)


@pytest.mark.parametrize("extra", [[], ["sweep=mine"]])
def test_make_ablations_lists_the_folders_hydra_trains_in(extra):
    for job in ablations.jobs("pooling", extra, Path("multirun"))[:2]:
        assert str(job["dir"]) == hydra_run_dir(["experiment=ablation/pooling", *extra, *job["overrides"]])


LONG = [f"+recipe.note{i}={'x' * (20 + i)}" for i in range(12)]  # together far past a folder name's 255 bytes
CHOICES = ["dataset=digits", "mask=gmm", "model=pit", "seed=3"]


def test_a_folder_name_too_long_keeps_the_seed_and_the_model_mask_and_dataset_choices():
    folder = Path(hydra_run_dir([*LONG, *CHOICES, "sweep=s"])).name
    parts = folder.split(",")
    assert len(folder.encode()) <= expand.NAME_MAX and parts[-1].startswith("hash=")
    assert set(CHOICES) <= set(parts)


def test_a_folder_name_too_long_leaves_out_its_longest_overrides_first():
    kept = expand.run_name([*LONG, "recipe.epochs=3", "seed=0"]).split(",")[:-1]
    notes = [o.lstrip("+") for o in LONG]
    left_out = [o for o in notes if o not in kept]
    assert "recipe.epochs=3" in kept and left_out
    assert max(len(o) for o in notes if o in kept) <= min(len(o) for o in left_out)


def test_a_shortened_folder_name_is_one_per_run_and_the_same_each_time():
    name = expand.run_name([*LONG, "seed=1"])
    assert name == expand.run_name([*LONG, "seed=1"]) != expand.run_name([*LONG, "seed=2"])
    assert name != expand.run_name([*LONG[:-1], LONG[-1] + "y", "seed=1"])  # a value left out still counts


def test_a_shortened_folder_name_keeps_each_override_whole_or_leaves_it_out():
    listed = "recipe.tags=[a," + "y" * 60 + "]"    # a list's commas do not part one override
    name = expand.run_name([*LONG, f"+{listed}", "seed=0"])
    assert "recipe.tags=[a" not in name and "y" * 60 not in name   # the longest, so it goes first
    assert "mask.sigma_init=[3.0,1.0]," in expand.run_name([*LONG, "mask.sigma_init=[3.0,1.0]", "seed=0"])


def test_a_folder_name_within_the_limit_is_its_overrides_in_order():
    assert expand.run_name(["seed=1", "mask=gmm"]) == "mask=gmm,seed=1"
