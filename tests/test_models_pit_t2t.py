"""PiT and T2T: they train with every mask and match the authors' parameter counts and MACs."""

import csv
import functools
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from gmmvit.complexity import count_macs, count_params
from gmmvit.masks import ElementwiseLearnableMask, GaussianMixtureMask, NoMask
from gmmvit.models.common import ConfigError
from gmmvit.models.pit import PiT
from gmmvit.models.t2t import T2T

REPO = Path(__file__).resolve().parents[1]
CSV = Path(__file__).resolve().parents[2] / "shared" / "paper" / "reference_params.csv"
ROWS = [r for r in csv.DictReader(CSV.open()) if r["model"] in ("pit", "t2t")]
MODELS = {"pit": PiT, "t2t": T2T}
MASKS = {"none": None, "gmm": functools.partial(GaussianMixtureMask),
         "elm": functools.partial(ElementwiseLearnableMask)}


def build(row):
    return MODELS[row["model"]](img_size=int(row["img_size"]), num_classes=int(row["num_classes"]),
                                mask=MASKS[row["mask"]])


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("mask", MASKS)
@pytest.mark.parametrize("img_size,in_chans,num_classes", [(32, 3, 10), (32, 1, 10), (64, 3, 200)])
def test_forward_backward(model, mask, img_size, in_chans, num_classes):
    torch.manual_seed(0)
    # no stochastic depth: a block dropped for both images would leave its mask without gradient
    net = MODELS[model](img_size=img_size, in_chans=in_chans, num_classes=num_classes, mask=MASKS[mask],
                        drop_path=0.0)
    out = net(torch.randn(2, in_chans, img_size, img_size))
    assert out.shape == (2, num_classes) and torch.isfinite(out).all()
    out.logsumexp(-1).sum().backward()
    masks = [m for m in net.modules() if isinstance(m, (GaussianMixtureMask, ElementwiseLearnableMask))]
    assert len(masks) == {"none": 0, "pit": 12, "t2t": 13 if img_size == 32 else 14}[model if mask != "none" else "none"]
    if model == "pit":  # PiT reads out the class token: the last block's patch-to-patch scores never reach it
        masks = masks[:-1]
    for m in masks:  # a zero-initialised ELM still gets a gradient: it multiplies nonzero scores
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())


@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"{r['model']}-{r['mask']}-{r['dataset']}")
def test_params_match_reference(row):
    assert count_params(build(row)) == int(row["params"])


@pytest.mark.parametrize("row", [r for r in ROWS if r["dataset"] in ("cifar10", "tinyimagenet")],
                         ids=lambda r: f"{r['model']}-{r['mask']}-{r['dataset']}")
def test_macs_match_reference(row):
    macs = count_macs(build(row), int(row["img_size"])) / 1e6
    assert macs == pytest.approx(float(row["thop_macs_M"]), rel=0.03)


@pytest.mark.parametrize("model,extra", [("pit", 600), ("t2t", 490)])
def test_gmm_adds_2KH_per_masked_layer(model, extra):
    base, gmm = (count_params(MODELS[model](mask=MASKS[m])) for m in ("none", "gmm"))
    assert gmm - base == extra


def test_pit_mask_leaves_class_token_alone():
    net = PiT(mask=functools.partial(GaussianMixtureMask))
    grids = [(b.attn.mask.grid_size, b.attn.mask.num_prefix_tokens)
             for stage in net.stages for b in stage if hasattr(b, "attn")]
    assert grids == [(16, 1)] * 2 + [(8, 1)] * 6 + [(4, 1)] * 4
    full = net.stages[0][0].attn.mask.full()
    assert (full[:, 0, :] == 1).all() and (full[:, :, 0] == 1).all()


def test_t2t_token_attention_scales_by_input_width():
    """The authors scale the token transformer's scores by in_width**-0.5, not token_dim**-0.5."""
    torch.manual_seed(0)
    tt = T2T(mask=functools.partial(GaussianMixtureMask)).soft_split[1].eval()
    x = torch.randn(2, 27, 256)
    q, k, v = tt.attn.qkv(tt.norm1(x.transpose(1, 2))).chunk(3, dim=-1)
    scores = tt.attn.mask.full() * (q @ k.transpose(-2, -1)) * 27 ** -0.5
    y = v + tt.proj(scores.softmax(-1) @ v)
    y = y + tt.mlp(tt.norm2(y))
    assert torch.allclose(tt(x), y.transpose(1, 2).reshape(2, 64, 16, 16), atol=1e-5)
    # the plain (SDPA) path agrees with the explicit one
    tt.attn.mask = NoMask()
    scores = (q @ k.transpose(-2, -1)) * 27 ** -0.5
    y = v + tt.proj(scores.softmax(-1) @ v)
    y = y + tt.mlp(tt.norm2(y))
    assert torch.allclose(tt(x), y.transpose(1, 2).reshape(2, 64, 16, 16), atol=1e-5)


@pytest.mark.parametrize("model", MODELS)
def test_yaml_builds_the_reference_model(model):
    cfg = OmegaConf.load(REPO / "conf" / "model" / f"{model}.yaml")
    assert cfg.pop("name") == model
    net = instantiate(cfg, img_size=32, in_chans=3, num_classes=10, mask=None)
    assert count_params(net) == int(next(r for r in ROWS if r["model"] == model)["params"])


@pytest.mark.parametrize("model,img_size", [("pit", 31), ("t2t", 36)])
def test_unfit_image_size_is_a_config_error(model, img_size):
    with pytest.raises(ConfigError):
        MODELS[model](img_size=img_size)
