"""What is particular to PiT and T2T: where their masks sit and how the authors scale them."""

import functools

import torch

from gmmvit.nn.masks import GaussianMixtureMask, NoMask
from gmmvit.nn.models.pit import PiT
from gmmvit.nn.models.t2t import T2T


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


def test_t2t_class_token_starts_like_the_authors_normal_with_std_0_02():
    torch.manual_seed(0)
    model = T2T(img_size=32, num_classes=10)
    assert model.cls_token is not None
    assert model.cls_token.abs().sum() > 0
    assert 0.01 < model.cls_token.std().item() < 0.03
