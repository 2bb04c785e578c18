"""Swin and CaiT: they train with every mask and match the authors' parameter counts and MACs."""

import csv
import functools
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from gmmvit.complexity import count_macs, count_params
from gmmvit.masks import ElementwiseLearnableMask, GaussianMixtureMask, NoMask
from gmmvit.models.cait import CaiT
from gmmvit.models.common import ConfigError
from gmmvit.models.swin import Swin, shifted_window_mask

REPO = Path(__file__).resolve().parents[1]
CSV = Path(__file__).resolve().parents[2] / "shared" / "paper" / "reference_params.csv"
ROWS = [r for r in csv.DictReader(CSV.open()) if r["model"] in ("swin", "cait")]
MODELS = {"swin": Swin, "cait": CaiT}
MASKS = {"none": None, "gmm": functools.partial(GaussianMixtureMask),
         "elm": functools.partial(ElementwiseLearnableMask)}
MASKED_LAYERS = {"swin": 12, "cait": 24}
# the authors' Swin never passes the ELM flag (its ELM row equals its base row); ours adds one
# 16x16 weight (the 4x4 window) to each of its 12 window attentions
SWIN_ELM_EXTRA = 12 * 16 * 16


def _id(row):
    return f"{row['model']}-{row['mask']}-{row['dataset']}"


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
    assert len(masks) == (0 if mask == "none" else MASKED_LAYERS[model])
    for m in masks:  # a zero-initialised ELM still gets a gradient: it multiplies nonzero scores
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())


@pytest.mark.parametrize("row", ROWS, ids=_id)
def test_params_match_reference(row):
    extra = SWIN_ELM_EXTRA if (row["model"], row["mask"]) == ("swin", "elm") else 0
    assert count_params(build(row)) == int(row["params"]) + extra


@pytest.mark.parametrize("row", [r for r in ROWS if r["dataset"] in ("cifar10", "tinyimagenet")], ids=_id)
def test_macs_match_reference(row):
    macs = count_macs(build(row), int(row["img_size"])) / 1e6
    assert macs == pytest.approx(float(row["thop_macs_M"]), rel=0.03)


@pytest.mark.parametrize("model,extra", [("swin", 900), ("cait", 960)])
def test_gmm_adds_2KH_per_masked_layer(model, extra):
    base, gmm = (count_params(MODELS[model](mask=MASKS[m])) for m in ("none", "gmm"))
    assert gmm - base == extra


def test_swin_masks_span_the_window_and_are_computed_once_per_layer(monkeypatch):
    net = Swin(mask=MASKS["gmm"])
    masks = [m for m in net.modules() if isinstance(m, GaussianMixtureMask)]
    assert [(m.grid_size, m.num_heads) for m in masks] == [(4, 3)] * 2 + [(4, 6)] * 6 + [(4, 12)] * 4
    calls = []
    values = GaussianMixtureMask.values
    monkeypatch.setattr(GaussianMixtureMask, "values", lambda self: calls.append(self) or values(self))
    net(torch.randn(2, 3, 32, 32))
    assert len(calls) == 12  # one per layer, not one per window or image


def test_swin_shift_mask_matches_timm():
    from timm.models.swin_transformer import SwinTransformerBlock

    timm_block = SwinTransformerBlock(96, (16, 16), 3, window_size=4, shift_size=2)
    assert torch.equal(shifted_window_mask(16, 4, 2).squeeze(1), timm_block.attn_mask)


def test_swin_window_attention_masks_scores_before_the_position_bias():
    """The authors' order: softmax(mask * (q k^T * scale) + relative bias + shift mask), per window."""
    torch.manual_seed(0)
    blk = Swin(mask=MASKS["gmm"]).layers[1]  # a shifted block of stage 1
    attn, x = blk.attn, torch.randn(2, 16, 16, 96)
    q, k, v = attn.qkv(x.view(2, 4, 4, 4, 4, 96).transpose(2, 3).reshape(2, 16, 16, 96)) \
        .view(2, 16, 16, 3, 3, 32).permute(3, 0, 1, 4, 2, 5)
    bias = attn.relative_position_bias_table[attn.relative_position_index].view(16, 16, 3).permute(2, 0, 1)
    scores = attn.mask.full() * (q @ k.transpose(-2, -1) * 32 ** -0.5) + bias + blk.shift_mask
    out = attn.proj((scores.softmax(-1) @ v).transpose(2, 3).reshape(2, 4, 4, 4, 4, 96))
    out = out.transpose(2, 3).reshape(2, 16, 16, 96)
    assert torch.allclose(attn(x, blk.shift_mask), out, atol=1e-5)


def test_cait_masks_scores_before_the_talking_heads():
    torch.manual_seed(0)
    net = CaiT(mask=MASKS["gmm"])
    assert all(b.attn.mask.grid_size == 8 for b in net.blocks)
    assert all(isinstance(b.attn.mask, NoMask) for b in net.cls_blocks)
    attn, x = net.blocks[0].attn, torch.randn(2, 64, 108)
    q = attn.q(x).view(2, 64, 4, 64).transpose(1, 2)
    k, v = attn.kv(x).view(2, 64, 2, 4, 64).permute(2, 0, 3, 1, 4)
    scores = attn.mask.full() * (q @ k.transpose(-2, -1)) * 64 ** -0.5
    mixed = torch.einsum("bhij,hg->bgij", scores, attn.mix_pre).softmax(-1)
    mixed = torch.einsum("bhij,hg->bgij", mixed, attn.mix_post)
    out = attn.proj((mixed @ v).transpose(1, 2).reshape(2, 64, 256))
    assert torch.allclose(attn(x), out, atol=1e-4)


def test_cait_layer_scale_follows_the_authors_index_rule():
    net = CaiT()
    assert [b.ls1.gamma[0].item() for b in net.blocks] == pytest.approx([0.1] * 18 + [1e-5] * 6)
    assert [b.ls1.gamma[0].item() for b in net.cls_blocks] == pytest.approx([0.1] * 2)


@pytest.mark.parametrize("model", MODELS)
def test_yaml_builds_the_reference_model(model):
    cfg = OmegaConf.load(REPO / "conf" / "model" / f"{model}.yaml")
    assert cfg.pop("name") == model
    net = instantiate(cfg, img_size=32, in_chans=3, num_classes=10, mask=None)
    assert count_params(net) == int(next(r for r in ROWS if r["model"] == model)["params"])


@pytest.mark.parametrize("model,schedule", [("swin", "linear"), ("cait", "constant")])
def test_stochastic_depth_defaults_to_the_authors_schedule(model, schedule):
    rates = [m.drop_prob for m in MODELS[model]().modules() if type(m).__name__ == "DropPath"]
    if schedule == "constant":
        assert rates == [0.1] * 26
    else:  # rate 0 for the first block: it gets nn.Identity
        assert rates == pytest.approx([0.1 * i / 11 for i in range(1, 12)])


@pytest.mark.parametrize("model,img_size", [("swin", 48), ("cait", 30)])
def test_unfit_image_size_is_a_config_error(model, img_size):
    with pytest.raises(ConfigError):
        MODELS[model](img_size=img_size)
