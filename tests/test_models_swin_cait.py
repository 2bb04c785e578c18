"""What is particular to Swin and CaiT: window masks, the mask before position bias / talking heads, LayerScale."""

import functools

import pytest
import torch

from gmmvit.nn.masks import ElementwiseLearnableMask, GaussianMixtureMask, NoMask
from gmmvit.nn.models.cait import CaiT
from gmmvit.nn.models.swin import Swin, shifted_window_mask


MODELS = {"swin": Swin, "cait": CaiT}
MASKS = {"none": None, "gmm": functools.partial(GaussianMixtureMask),
         "elm": functools.partial(ElementwiseLearnableMask)}

SWIN_ELM_EXTRA = 12 * 16 * 16


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


@pytest.mark.parametrize("model,schedule", [("swin", "linear"), ("cait", "constant")])
def test_stochastic_depth_defaults_to_the_authors_schedule(model, schedule):
    rates = [m.drop_prob for m in MODELS[model]().modules() if type(m).__name__ == "DropPath"]
    assert rates[0::2] == rates[1::2]  # a block's attention and MLP branches: one DropPath each, at its rate
    rates = rates[0::2]
    if schedule == "constant":
        assert rates == [0.1] * 26
    else:  # rate 0 for the first block: it gets nn.Identity
        assert rates == pytest.approx([0.1 * i / 11 for i in range(1, 12)])
