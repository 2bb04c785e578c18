"""Config composition: every model x mask x dataset composes; the groups are discoverable."""

import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from conftest import CONF, REPO
from gmmvit import paper

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


def test_cli_help_lists_the_groups_of_conf_and_its_launchers_not_the_schemas_own():
    out = subprocess.run([sys.executable, "src/train.py", "--help"], cwd=REPO, capture_output=True,
                         text=True, check=True)
    groups = [line.partition(":")[0] for line in out.stdout.split("== Config groups")[1].split("== Config (")[0]
              .splitlines()[1:] if line.strip()]
    assert groups == ["dataset", "experiment", "experiment/ablation", "experiment/protocol", "hydra/launcher",
                      "logger", "mask", "model", "recipe"]
    assert "hydra/launcher: local, local_gpus, ray_gpus, slurm" in out.stdout


@pytest.mark.parametrize("model", MODELS)
def test_default_config_is_the_papers_recipe(compose_config, model):
    cfg = compose_config([f"model={model}"])
    for key, value in paper.recipe().items():
        assert OmegaConf.select(cfg, key) == pytest.approx(value), key

