"""Every key is checked before any data is read (``gmmvit.config.checks.check``, which the sweep
preflight runs for every job): the open model keys against the types their model class declares and
by building the network once on the meta device, ranges, the dataset's facts against the data, the
batch size against the training images left, required groups, unknown group options."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import REPO
from gmmvit.config import checks, refusals
from gmmvit.errors import ConfigError

REFUSED = {
    "model.depth=-1": "model.depth=-1: model.depth takes a whole number >= 1 (model=vit)",
    "model.patch_size=0": "model.patch_size=0: model.patch_size takes a whole number >= 1 or null (model=vit)",
    "model.mlp_ratio=-1": "model.mlp_ratio=-1: model.mlp_ratio takes a number > 0 (model=vit)",
    "model.embed_dim=[1,2]": "model.embed_dim=[1, 2]: model.embed_dim takes a whole number >= 1 (model=vit)",
    "model.drop_path=1.5": "model.drop_path=1.5: model.drop_path takes a rate in [0, 1) (model=vit)",
    "model=swin model.depths=[2,-1,4]": ("model.depths=[2, -1, 4]: model.depths takes a list of whole numbers >= 1 "
                                         "(model=swin)"),
    "model=cait model.depth=0": "model.depth=0: model.depth takes a whole number >= 1 (model=cait)",
    "model.num_heads=64 model.embed_dim=32": (
        "model.embed_dim=32, model.num_heads=64: model=vit cannot be built with them (ValueError: 64 heads over a "
        "width of 32 leave each head no dimension); use values that fit (the option's own: model.embed_dim=192, "
        "model.num_heads=12)"),
    "model.drop_path_schedule=ramp": (
        "model.drop_path_schedule=ramp: model=vit cannot be built with it (ValueError: drop_path_schedule must be "
        "'constant' or 'linear', got 'ramp'); use values that fit (the option's own: "
        "model.drop_path_schedule=constant)"),
    "mask=gmm mask.sigma_init=[10.0]": ("mask.sigma_init=[10.0]: mask.sigma_init takes [mean, std] with std >= 0 "
                                        "(the authors': [10.0, 10.0])"),
    "recipe.grad_clip=-1": "recipe.grad_clip=-1.0: recipe.grad_clip must be > 0 or null",
    "seed=-1": "seed=-1: seed must be >= 0",
    "seed=4294967296": "seed=4294967296: seed must be <= 4294967295",
    "dataset=digits dataset.num_classes=5": ("dataset.num_classes=5: dataset digits has 10 classes (scikit-learn's "
                                             "load_digits); set dataset.num_classes=10 or leave it to the dataset's file"),
    "dataset=digits dataset.channels=3": ("dataset.channels=3: dataset digits has 1 channel(s) (scikit-learn's "
                                          "load_digits); set dataset.channels=1 or leave it to the dataset's file"),
    "dataset=cifar100 dataset.num_classes=10": (
        "dataset.num_classes=10: dataset cifar100 has 100 classes (the cifar-100-python format); set "
        "dataset.num_classes=100 or leave it to the dataset's file"),
    "~mask": "mask is a required group: keep it, or pick one of elm, gmm, none (mask=NAME), not ~mask",
    "model=resnet": "model=resnet: model takes one of cait, pit, swin, t2t, vit",
    "experiment=ablation/size": ("experiment=ablation/size: experiment takes one of ablation/combine, "
                                 "ablation/data_fraction, ablation/kernels, ablation/placement, ablation/pooling, "
                                 "demo, paper, protocol/clean"),
    "dataset=digits limit_train=10": ("recipe.batch_size=128: no full batch of 128 in the 10 training images left by "
                                      "limit_train=10; lower recipe.batch_size or raise limit_train"),
    "dataset=digits dataset.train_fraction=0.01": (
        "recipe.batch_size=128: no full batch of 128 in the at most 24 training images left by "
        "dataset.train_fraction=0.01; lower recipe.batch_size or raise dataset.train_fraction"),
    "dataset=digits recipe.batch_size=2000": ("recipe.batch_size=2000: no full batch of 2000 in the 1437 training "
                                              "images of digits; lower recipe.batch_size"),
}


def refusal(compose_config, overrides, data_dir=None) -> str:
    """The line ``python src/train.py <overrides>`` prints after ``gmmvit: error:``."""
    try:
        cfg = compose_config(overrides, data_dir=data_dir)
    except Exception as exc:
        line = refusals.explain(exc)
        assert line is not None, f"not a one-line refusal: {exc}"
        return line
    with pytest.raises(ConfigError) as refused:
        checks.check(cfg, machine=False)
    return str(refused.value)


@pytest.mark.parametrize("args", list(REFUSED))
def test_a_key_no_run_can_train_with_is_refused_in_one_line_naming_it(compose_config, args):
    assert refusal(compose_config, args.split()) == REFUSED[args]


def test_the_checks_read_no_data(compose_config, tmp_path):
    data = tmp_path / "data"
    for args in (["dataset=fashion_mnist"], ["dataset=cifar10", "model=swin", "mask=gmm"]):
        checks.check(compose_config(args, data_dir=data), machine=False)
    assert not data.exists()


def test_a_cifar_class_count_is_read_from_the_meta_file_on_disk(compose_config, tmp_path):
    import pickle

    folder = tmp_path / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(7)]}))
    assert refusal(compose_config, ["dataset=cifar10"], data_dir=tmp_path) == (
        f"dataset.num_classes=10: dataset cifar10 has 7 classes ({folder / 'batches.meta'}); set "
        "dataset.num_classes=7 or leave it to the dataset's file")


def test_a_small_network_the_paper_never_used_still_passes(compose_config):
    checks.check(compose_config(["dataset=digits", "model.depth=1", "model.embed_dim=32", "model.num_heads=2",
                                 "model.patch_size=8", "recipe.grad_clip=1.0", "seed=4294967295"]), machine=False)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("args, expected", [
    ("-m seed=0,-1,1", "job 2/3: seed=-1: seed must be >= 0; no job was started"),
    ("model=resnet", "model=resnet: model takes one of cait, pit, swin, t2t, vit"),
    ("-m model=vit,resnet", "job 2/2: model=resnet: model takes one of cait, pit, swin, t2t, vit; no job was started"),
])
def test_the_command_line_refuses_in_one_line_with_exit_2_before_any_job(tmp_path, args, expected):
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    flags = [a for a in args.split() if a.startswith("-")]
    overrides = [a for a in args.split() if not a.startswith("-")]
    out = subprocess.run([sys.executable, "src/train.py", *flags, "dataset=digits", "logger=none",
                          f"paths.data={tmp_path / 'data'}", f"hydra.run.dir={tmp_path}/run",
                          f"hydra.sweep.dir={tmp_path}/sweep", *overrides],
                         cwd=REPO, capture_output=True, text=True, env=env, timeout=110)
    assert out.returncode == 2, out.stderr
    assert out.stderr.splitlines() == [f"gmmvit: error: {expected}"], out.stderr
    assert not list(tmp_path.rglob("metrics.json")) and not (tmp_path / "data").exists()
