"""Config composition: every model x mask x dataset composes; the groups are discoverable."""

import subprocess
import sys

import pytest

from conftest import CONF, REPO

MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))
MASKS = ["none", "elm", "gmm"]
DATASETS = ["cifar10", "cifar100", "svhn", "tinyimagenet", "fashion_mnist", "digits"]


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("mask", MASKS)
@pytest.mark.parametrize("model", MODELS)
def test_every_model_mask_dataset_composes(compose_config, model, mask, dataset):
    cfg = compose_config([f"model={model}", f"mask={mask}", f"dataset={dataset}"])
    assert cfg.model.name == model and cfg.mask.name == mask and cfg.dataset.name == dataset
    assert cfg.dataset.img_size in (32, 64)


def test_cli_cfg_job_prints_the_composed_config():
    out = subprocess.run([sys.executable, "src/train.py", "--cfg", "job", "model=vit", "mask=gmm",
                          "dataset=cifar100"], cwd=REPO, capture_output=True, text=True, check=True)
    assert "GaussianMixtureMask" in out.stdout and "num_classes: 100" in out.stdout


def test_cli_help_lists_the_config_groups():
    out = subprocess.run([sys.executable, "src/train.py", "--help"], cwd=REPO, capture_output=True,
                         text=True, check=True)
    for group in ("model:", "mask:", "dataset:", "recipe:", "logger:", "experiment:"):
        assert group in out.stdout
    for option in ("vit", "gmm", "elm", "fashion_mnist", "tinyimagenet", "demo"):
        assert option in out.stdout


def test_paper_recipe_is_the_specs(compose_config):
    r = compose_config([]).recipe
    assert (r.optimizer.lr, r.optimizer.weight_decay, r.batch_size, r.epochs) == (1e-3, 0.05, 128, 100)
    assert (r.passes_per_epoch, r.warmup_epochs, r.min_lr, r.label_smoothing) == (3, 10, 1e-6, 0.1)
    assert (r.aug.random_erasing, r.aug.random_erasing_max_area, r.aug.random_erasing_min_aspect) == (0.25, 0.4, 0.3)
    assert (r.mix.prob, r.mix.switch_prob, r.mix.mixup_alpha, r.mix.cutmix_alpha) == (0.5, 0.5, 1.0, 1.0)

