"""The ablation options and presets: each option changes what it names and nothing else; each preset
composes and trains; `make table` reads a real tiny ablation sweep."""

from __future__ import annotations

import functools
import json
import math
import statistics
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from gmmvit.nn import kernels
from gmmvit.config import ablations
from gmmvit.sweeps import cost
from gmmvit.data import datasets, sampling
from gmmvit.sweeps import table as table_lib
from gmmvit.nn.attention import MaskedAttention
from gmmvit.config.reporting import user_error
from gmmvit.nn.masks import ElementwiseLearnableMask, GaussianMixtureMask
from gmmvit.errors import ConfigError
from gmmvit.nn.models.pit import PiT
from gmmvit.run.train import build_model, train

TINY = ["dataset=digits", "model.depth=1", "model.embed_dim=32", "model.num_heads=2", "recipe.epochs=1",
        "recipe.batch_size=64", "recipe.warmup_epochs=0", "recipe.passes_per_epoch=1", "limit_train=256",
        "limit_test=128", "threads=1", "logger=none"]


# --- mask.placement ---------------------------------------------------------------------------------

def _post_gmm(**kw):
    torch.manual_seed(0)
    return GaussianMixtureMask(num_heads=2, grid_size=4, placement="post", **kw)


def test_post_softmax_rows_sum_to_one():
    mask = _post_gmm()
    attn = mask.after_softmax(torch.randn(3, 2, 16, 16).softmax(dim=-1))
    torch.testing.assert_close(attn.sum(dim=-1), torch.ones(3, 2, 16), rtol=0, atol=1e-5)


def test_post_softmax_is_the_softmax_times_the_mask_renormalised():
    mask = _post_gmm()
    p = torch.randn(1, 2, 16, 16).softmax(dim=-1)
    m = mask.values().detach()
    expected = p * m / (p * m).sum(dim=-1, keepdim=True)
    torch.testing.assert_close(mask.after_softmax(p), expected, rtol=1e-4, atol=1e-6)


def test_post_placement_leaves_the_scores_before_the_softmax_alone():
    scores = torch.randn(1, 2, 16, 16)
    assert torch.equal(_post_gmm()(scores, 0.25), scores * 0.25)


@pytest.mark.parametrize("mode", ["auto", "explicit", "flex"])
def test_post_placement_attention_runs_the_definition_on_every_path(mode):
    torch.manual_seed(0)
    attn = MaskedAttention(32, num_heads=2, mask=_post_gmm()).eval()
    q, k, v = torch.randn(3, 2, 2, 16, 16).unbind(0)
    m = attn.mask.values().detach()
    p = (q @ k.transpose(-2, -1) * attn.scale).softmax(dim=-1)
    expected = (p * m / (p * m).sum(dim=-1, keepdim=True)) @ v
    attn.attention = mode
    assert not kernels.use_flex(q, attn.mask, mode=mode)
    out = attn.attend(q, k, v)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)


def test_post_placement_keeps_the_class_token_row_a_plain_softmax():
    torch.manual_seed(0)
    mask = GaussianMixtureMask(num_heads=2, grid_size=4, num_prefix_tokens=1, placement="post")
    p = torch.randn(1, 2, 17, 17).softmax(dim=-1)
    torch.testing.assert_close(mask.after_softmax(p)[..., 0, :], p[..., 0, :], rtol=1e-5, atol=1e-6)


def test_pre_placement_is_the_authors_mask_and_leaves_the_softmax_alone():
    torch.manual_seed(0)
    pre = GaussianMixtureMask(num_heads=2, grid_size=4)
    scores, p = torch.randn(1, 2, 16, 16), torch.rand(1, 2, 16, 16)
    assert pre.placement == "pre"
    torch.testing.assert_close(pre(scores, 0.5), scores * pre.values() * 0.5)
    assert torch.equal(pre.after_softmax(p), p)


def test_post_placement_refuses_add_and_elm():
    with pytest.raises(ConfigError, match="mask.combine=mul"):
        GaussianMixtureMask(num_heads=1, grid_size=2, combine="add", placement="post")
    with pytest.raises(ConfigError, match="placement=pre"):
        ElementwiseLearnableMask(num_heads=1, grid_size=2, placement="post")
    with pytest.raises(ConfigError, match="placement must be one of"):
        GaussianMixtureMask(num_heads=1, grid_size=2, placement="middle")


@pytest.mark.parametrize("model", ["vit", "swin", "cait", "pit", "t2t"])
def test_post_placement_trains_every_model(compose_config, model):
    model_ = build_model(compose_config([f"model={model}", "mask=gmm", "mask.placement=post"]))
    loss = model_(torch.randn(2, 3, 32, 32)).logsumexp(dim=1).mean()
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all()
               for n, p in model_.named_parameters() if n.endswith(("mask.sigma", "mask.alpha")))


# --- model.pool -------------------------------------------------------------------------------------

def _seeded_model(compose_config, overrides):
    torch.manual_seed(0)
    return build_model(compose_config(overrides))


def test_pool_mean_on_a_gmm_vit_is_the_authors_gmm_vit(compose_config):
    authors = _seeded_model(compose_config, ["model=vit", "mask=gmm"])
    mean = _seeded_model(compose_config, ["model=vit", "mask=gmm", "model.pool=mean"])
    assert authors.state_dict().keys() == mean.state_dict().keys()
    assert all(torch.equal(v, mean.state_dict()[k]) for k, v in authors.state_dict().items())
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(authors.eval()(x), mean.eval()(x))


def test_pool_token_on_a_gmm_vit_keeps_the_class_token_outside_the_mask(compose_config):
    token = _seeded_model(compose_config, ["model=vit", "mask=gmm", "model.pool=token"])
    mean = _seeded_model(compose_config, ["model=vit", "mask=gmm", "model.pool=mean"])
    assert token.cls_token is not None and token.blocks[0].attn.mask.num_prefix_tokens == 1
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(token) - n(mean) == 2 * 192          # the class token and its position slot


def test_pit_pool_token_is_the_authors_pit_and_mean_drops_the_class_token(compose_config):
    authors = _seeded_model(compose_config, ["model=pit", "mask=gmm"])
    torch.manual_seed(0)
    assert authors.pool == "token" and sum(p.numel() for p in authors.parameters()) == sum(
        p.numel() for p in PiT(mask=functools.partial(GaussianMixtureMask)).parameters())
    mean = _seeded_model(compose_config, ["model=pit", "mask=gmm", "model.pool=mean"])
    assert mean.cls_token is None and mean.stages[0][0].attn.mask.num_prefix_tokens == 0
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    # class token + its position slot (96 each), the class-token Linears between stages
    assert n(authors) - n(mean) == 96 + 96 + (96 * 192 + 192) + (192 * 384 + 384)
    assert mean(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("model,pool", [("swin", "token"), ("t2t", "token"), ("cait", "mean")])
def test_models_that_pool_one_way_name_it_and_refuse_the_other(compose_config, model, pool):
    build_model(compose_config([f"model={model}"]))
    with pytest.raises(Exception) as info:           # Hydra's instantiate wraps it; the CLI prints the cause
        build_model(compose_config([f"model={model}", f"model.pool={pool}"]))
    assert "applies to vit and pit" in str(user_error(info.value))


# --- dataset.train_fraction -------------------------------------------------------------------------

def _train_indices(compose_config, overrides, data_dir):
    cfg = compose_config(overrides, data_dir=data_dir)
    train_split, _ = datasets.load_splits(cfg.dataset)
    return train_split, sampling.class_balanced_subset(train_split, cfg.dataset.train_fraction, cfg.seed)


def test_a_tenth_keeps_a_tenth_of_every_class_and_the_same_images_for_every_mask_and_model(
        compose_config, data_dir):
    kept = {}
    for model, mask in (("vit", "none"), ("vit", "gmm"), ("pit", "elm")):
        full, kept[mask] = _train_indices(
            compose_config, ["dataset=digits", f"model={model}", f"mask={mask}", "dataset.train_fraction=0.1"],
            data_dir)
    assert kept["none"].indices == kept["gmm"].indices == kept["elm"].indices
    per_class = Counter(full.targets)
    kept_per_class = Counter(full.targets[i] for i in kept["none"].indices)
    assert set(kept_per_class) == set(per_class)
    assert all(kept_per_class[c] == round(0.1 * n) for c, n in per_class.items())


def test_train_fraction_depends_on_the_seed_and_one_keeps_everything(compose_config, data_dir):
    _, seed0 = _train_indices(compose_config, ["dataset=digits", "dataset.train_fraction=0.1"], data_dir)
    _, seed1 = _train_indices(compose_config, ["dataset=digits", "dataset.train_fraction=0.1", "seed=1"], data_dir)
    assert seed0.indices != seed1.indices and len(seed0.indices) == len(seed1.indices)
    full, same = _train_indices(compose_config, ["dataset=digits"], data_dir)
    assert same is full


def test_train_fraction_reads_labels_from_torchvision_datasets(data_dir):
    fmnist = datasets.fashion_mnist(str(data_dir / "fashion_mnist"), train=True)
    kept = sampling.class_balanced_subset(fmnist, 0.01, seed=0)
    assert np.bincount(sampling.split_targets(kept)).tolist() == [60] * 10


def test_training_runs_on_the_fraction(compose_config, tmp_path, data_dir):
    full, kept = _train_indices(compose_config, ["dataset=digits", "dataset.train_fraction=0.1"], data_dir)
    cfg = compose_config([*TINY, "limit_train=null", "dataset.train_fraction=0.1", "recipe.batch_size=256"],
                         run_dir=tmp_path / "run", data_dir=data_dir)
    with pytest.raises(ValueError, match=f"no full batch of 256 in the {len(kept.indices)} training images left by "
                                         "dataset.train_fraction=0.1; lower recipe.batch_size or raise "
                                         "dataset.train_fraction"):
        train(cfg)
    assert len(kept.indices) < 256 < len(full)


def test_train_fraction_outside_zero_to_one_is_refused():
    with pytest.raises(ConfigError, match="train_fraction"):
        sampling.class_balanced_subset(list(range(10)), 0.0)


# --- presets ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["pooling", "placement", "combine", "kernels", "data_fraction"])
def test_every_preset_composes_and_its_first_job_trains(compose_config, tmp_path, data_dir, name):
    assert name in ablations.preset_names()
    jobs = ablations.grid(name, TINY)
    assert len(jobs) >= 6 and all(f"seed={s}" in sum(jobs, []) for s in (0, 1, 2))
    cfg = compose_config([f"experiment=ablation/{name}", *jobs[0]], run_dir=tmp_path / "run", data_dir=data_dir)
    assert cfg.sweep == f"ablation/{name}" and cfg.gain_reference
    result = train(cfg)
    assert result["status"] == "finished" and result["history"][0]["train_loss"] > 0


def test_gmm_kernels_and_init_sweep_cleanly(compose_config, tmp_path, data_dir):
    jobs = ablations.grid("kernels", [*TINY, "seed=0", "mask.num_kernels=1,3",
                                      "mask.sigma_init=[10.0,10.0],[3.0,1.0]", "mask.alpha_init_std=1,2"])
    assert len(jobs) == 8
    for job in (jobs[0], jobs[-1]):
        cfg = compose_config(["experiment=ablation/kernels", *job], run_dir=tmp_path / "_".join(job[-3:]),
                             data_dir=data_dir)
        model = build_model(cfg)
        mask = model.blocks[0].attn.mask
        assert mask.num_kernels == cfg.mask.num_kernels and mask.sigma.shape[0] == cfg.mask.num_kernels
        assert train(cfg)["status"] == "finished"


@pytest.mark.parametrize("name, n", [("pooling", 18), ("placement", 6), ("combine", 12), ("kernels", 12),
                                     ("data_fraction", 36)])
def test_each_preset_has_its_number_of_jobs(name, n):
    assert len(ablations.jobs(name, [], Path("multirun"))) == n


def test_an_override_of_a_swept_key_replaces_the_presets_values():
    assert len(ablations.jobs("pooling", ["model=vit,pit", "seed=0,1,2,3,4"], Path("multirun"))) == 60


def test_ablations_dry_run_counts_jobs_and_gpu_hours(capsys):
    assert ablations.main(["--dry", "--only", "placement,combine"]) == 0
    out = capsys.readouterr().out
    for name, n in (("placement", 6), ("combine", 12)):
        line = next(l for l in out.splitlines() if l.strip().startswith(name))
        assert f"{n} jobs" in line and "GPU-h left" in line and "vit on cifar10" in line
    assert "runs_per_gpu=" not in out.replace(cost.NO_PACKING, "")  # no hours divided by an unmeasured gain
    assert cost.NO_PACKING in next(l for l in out.splitlines() if l.strip().startswith("all"))


@pytest.mark.parametrize("argv, line", [
    (["--dry", "--only", "placement", "model=pitt"],
     "ablation/placement: model=pitt: model takes one of cait, pit, swin, t2t, vit"),
    (["--dry", "--only", "pooling", "model=swin"], "model=swin has no class token"),
    (["--dry", "--only", "placement", "bogus=1"], "bogus is not a config key"),
    (["--dry", "--only", "placement", "seed=0,-1"], "job 2/4: seed=-1: seed must be >= 0"),
    (["--dry", "--only", "pooling,bogus"], "--only pooling,bogus: --only takes comma-separated names from combine,"),
    (["--dry", "--launcher", "bogus"], "--launcher bogus: --launcher takes one of basic, joblib, local,"),
    (["--only", "placement", "--launcher", "bogus"], "--launcher bogus: --launcher takes one of"),
    (["--dry", "--only", "placement", "seed=0,1,"], "seed=0,1,: Hydra cannot parse this override"),
    (["--dry", "--only", "placement", "+experiment=demo"], "experiment is given more than once"),
    (["--dry", "--only", "pooling,combine", "sweep=mine"],
     "sweep=mine would put the runs of 2 presets (pooling, combine) in one sweep, multirun/mine, and one table"),
])
def test_ablations_refuses_a_bad_flag_or_override_in_one_line(capsys, argv, line):
    with pytest.raises(SystemExit) as exit_:
        ablations.main(argv)
    out = capsys.readouterr()
    assert exit_.value.code == 2 and out.out == ""
    assert out.err.startswith("gmmvit: error: ") and line in out.err and out.err.count("\n") == 1


@pytest.mark.parametrize("preset, line", [
    ("combine", "job 4/12: mask.combine=add: mask=none has no mask to combine with the scores"),
    ("placement", "job 4/12: mask.placement=post: mask=none has no mask to place"),
])
def test_a_mask_setting_given_to_mask_none_is_refused_before_it_trains_plain_attention_twice(capsys, preset, line):
    with pytest.raises(SystemExit) as exit_:
        ablations.main(["--dry", "--only", preset, "mask=none,gmm"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and line in err and err.count("\n") == 1


def test_ablations_refuses_a_later_preset_before_the_first_one_starts(capsys):
    with pytest.raises(SystemExit) as exit_:
        ablations.main(["--only", "placement,pooling", "model=swin"])
    out = capsys.readouterr()
    assert exit_.value.code == 2 and "+ " not in out.out  # no preset's multirun was launched
    assert "ablation/pooling job 1/18: model=swin has no class token" in out.err and "no job was started" in out.err


def test_ablations_trains_into_the_multirun_folder_it_lists(tmp_path, data_dir, sweeps, capsys):
    from gmmvit.catalog import MULTIRUN

    sweep = sweeps("ablations-root")
    argv = ["--only", "placement", "--multirun", str(tmp_path), *TINY, "seed=0", f"sweep={sweep}",
            f"paths.data={data_dir}"]
    assert ablations.main(argv) == 0
    trained = [p for p in (tmp_path / sweep).iterdir() if (p / "metrics.json").is_file()]
    assert len(trained) == 2 and not (MULTIRUN / sweep).exists()
    ablations.main(["--dry", *argv])
    assert "2 jobs (2 finished)" in capsys.readouterr().out


def test_make_status_names_the_setting_each_run_of_an_ablation_sweep_varies(compose_config, tmp_path, data_dir):
    from gmmvit.sweeps.folders import collect_sweeps
    from gmmvit.sweeps.status import sweep_status

    sweep = tmp_path / "combine"
    for combine in ("mul", "add"):
        overrides = ["experiment=ablation/combine", *TINY, "mask=gmm", f"mask.combine={combine}", "seed=0"]
        train(compose_config(overrides, run_dir=sweep / f"mask.combine={combine}", data_dir=data_dir))
    lines = sweep_status(*collect_sweeps([sweep]).popitem()).splitlines()
    for combine in ("mul", "add"):
        assert any(line.startswith(f"  vit/gmm [mask.combine={combine}]/digits seed 0 ") for line in lines), lines


def test_a_sweep_mixing_presets_of_two_gain_references_says_what_its_gains_pair_with(compose_config, tmp_path,
                                                                                     data_dir, capsys):
    # the clean protocol stacked on two presets without sweep=NAME: both land in its sweep, protocol_clean
    sweep = tmp_path / "protocol_clean"
    for preset in ("demo", "ablation/pooling"):
        for mask in ("none", "gmm"):
            overrides = [f"experiment={preset}", "+experiment@_global_=protocol/clean", *TINY, f"mask={mask}", "seed=0"]
            train(compose_config(overrides, run_dir=sweep / f"{preset.replace('/', '-')},mask={mask}",
                                 data_dir=data_dir))
    assert table_lib.main([str(sweep), "--select", "test"]) == 0
    assert ("Warning: its runs name 2 gain references (mask=none | mask=none, model.pool=token), so every gain "
            "pairs with mask=none; train each preset in a sweep of its own (sweep=NAME)") in capsys.readouterr().out


# --- make table on a real tiny ablation sweep -------------------------------------------------------

@pytest.fixture(scope="module")
def fraction_sweep(tmp_path_factory, data_dir):
    """The data-fraction preset on digits: fractions 0.5 and 1 x none, gmm x seeds 0, 1, 2 (all 1,437
    training images, two epochs of a one-block ViT)."""
    from gmmvit.config.compose import compose_config

    sweep = tmp_path_factory.mktemp("ablation") / "data_fraction"
    overrides = [*TINY, "recipe.epochs=2", "limit_train=null", "mask=none,gmm", "dataset.train_fraction=0.5,1.0"]
    for job in ablations.grid("data_fraction", overrides):
        swept = ",".join(sorted(o for o in job if o.startswith(("mask=", "dataset.train_fraction=", "seed="))))
        cfg = compose_config(["experiment=ablation/data_fraction", *job], run_dir=sweep / swept, data_dir=data_dir)
        assert train(cfg)["status"] == "finished"
    return sweep


def _best(sweep, fraction, mask, seed):
    [run] = [p for p in sweep.iterdir() if p.is_dir() and f"dataset.train_fraction={fraction}" in p.name
             and f"mask={mask}," in p.name and p.name.endswith(f"seed={seed}")]
    return json.loads((run / "metrics.json").read_text())["final"]["best_top1"]


@pytest.mark.slow
def test_table_rows_follow_the_varied_key_and_gains_pair_with_the_reference(fraction_sweep, capsys):
    assert table_lib.main([str(fraction_sweep)]) == 0
    md = (fraction_sweep / "table.md").read_text()
    assert "ablation/data_fraction" in md and "reference: mask=none" in md
    for fraction in ("0.5", "1.0"):
        for mask in ("none", "gmm"):
            assert f"| {mask} [dataset.train_fraction={fraction}] |" in md
        diffs = [_best(fraction_sweep, fraction, "gmm", s) - _best(fraction_sweep, fraction, "none", s)
                 for s in (0, 1, 2)]
        mean = statistics.fmean(diffs)
        half = 4.303 * statistics.stdev(diffs) / math.sqrt(3)
        label = f"Δ gmm [dataset.train_fraction={fraction}] − none [dataset.train_fraction={fraction}]"
        line = next(l for l in md.splitlines() if label in l)
        assert f"{mean:+.2f} [{mean - half:+.2f}, {mean + half:+.2f}] (n=3)" in line
        assert line.rstrip(" |").split("|")[3].strip().endswith("n.s.") == (mean - half <= 0 <= mean + half)
    rows = list(__import__("csv").DictReader(open(fraction_sweep / "table.csv")))
    gains = [r for r in rows if r["row"] == "gain_vs_none"]
    assert len(gains) == 2 and {r["variant"] for r in gains} == {"dataset.train_fraction=0.5",
                                                                "dataset.train_fraction=1.0"}
