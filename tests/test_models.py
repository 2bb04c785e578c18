"""Behaviour every architecture shares: it trains with every mask, its masks all learn, its YAML
builds the authors' model, and it refuses an image size it cannot take. (Per-row parameter counts
and MACs: test_reference_params.py.)"""

import functools

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from conftest import CONF
from gmmvit.nn.complexity import count_params
from gmmvit.nn.masks import ElementwiseLearnableMask, GaussianMixtureMask
from gmmvit.nn.models.cait import CaiT
from gmmvit.errors import ConfigError
from gmmvit.nn.models.pit import PiT
from gmmvit.nn.models.swin import Swin
from gmmvit.nn.models.t2t import T2T
from gmmvit.nn.models.vit import ViT

MODELS = {"vit": ViT, "swin": Swin, "cait": CaiT, "pit": PiT, "t2t": T2T}
MASKS = {"none": None, "gmm": functools.partial(GaussianMixtureMask),
         "elm": functools.partial(ElementwiseLearnableMask)}
# masked attention layers at 32 px (T2T gains a token transformer at 64 px)
MASKED_LAYERS = {"vit": 9, "swin": 12, "cait": 24, "pit": 12, "t2t": 13}
CIFAR10_PARAMS = {"vit": 2692426, "swin": 7073188, "cait": 5078834, "pit": 6972586, "t2t": 6486080}
UNFIT_SIZES = {"vit": 30, "swin": 48, "cait": 30, "pit": 31, "t2t": 36}


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("mask", MASKS)
@pytest.mark.parametrize("img_size,in_chans,num_classes", [(32, 3, 10), (32, 1, 10), (64, 3, 200)])
def test_every_mask_trains_in_every_model(model, mask, img_size, in_chans, num_classes):
    torch.manual_seed(0)
    # no stochastic depth: a block dropped for both images would leave its mask without gradient
    net = MODELS[model](img_size=img_size, in_chans=in_chans, num_classes=num_classes, mask=MASKS[mask],
                        drop_path=0.0)
    out = net(torch.randn(2, in_chans, img_size, img_size))
    assert out.shape == (2, num_classes) and torch.isfinite(out).all()
    out.logsumexp(-1).sum().backward()
    masks = [m for m in net.modules() if isinstance(m, (GaussianMixtureMask, ElementwiseLearnableMask))]
    expected = MASKED_LAYERS[model] + (1 if model == "t2t" and img_size == 64 else 0)
    assert len(masks) == (0 if mask == "none" else expected)
    if model == "pit":  # PiT reads out the class token: the last block's patch-to-patch scores never reach it
        masks = masks[:-1]
    for m in masks:  # a zero-initialised ELM still gets a gradient: it multiplies nonzero scores
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())


@pytest.mark.parametrize("model", MODELS)
def test_yaml_builds_the_reference_model(model):
    cfg = OmegaConf.load(CONF / "model" / f"{model}.yaml")
    assert cfg.pop("name") == model
    net = instantiate(cfg, img_size=32, in_chans=3, num_classes=10, mask=None)
    assert count_params(net) == CIFAR10_PARAMS[model]


@pytest.mark.parametrize("model", MODELS)
def test_unfit_image_size_is_a_config_error(model):
    with pytest.raises(ConfigError, match=f"{UNFIT_SIZES[model]}px"):
        MODELS[model](img_size=UNFIT_SIZES[model])
